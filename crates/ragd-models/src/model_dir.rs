//! Finding a model's folder from what a user wrote (`--embedder NAME`).

use std::path::{Path, PathBuf};

use ragd_core::{ModelError, Result};

/// Finds a model folder: an existing path, else a name inside `models_dir`
/// (`org/name` is looked up as `org--name`). `none` or an empty spec means
/// "not configured" (`Ok(None)`).
pub fn resolve_model_dir(spec: &str, models_dir: &Path) -> Result<Option<PathBuf>> {
    if spec.eq_ignore_ascii_case("none") || spec.is_empty() {
        return Ok(None);
    }
    let direct = PathBuf::from(spec);
    if direct.is_dir() {
        return Ok(Some(direct));
    }
    let named = models_dir.join(spec.replace('/', "--"));
    if named.is_dir() {
        return Ok(Some(named));
    }
    Err(ModelError::load(
        spec,
        format!(
            "neither a folder nor a name in {} (run `models/fetch` for the defaults, `ragd models pull REPO` \
             when online, or copy a model folder there)",
            models_dir.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_is_unset_names_are_looked_up_and_missing_ones_fail() {
        let dir = std::env::temp_dir().join(format!("ragd-model-dir-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("org--m")).unwrap();
        assert_eq!(resolve_model_dir("none", &dir).unwrap(), None);
        assert_eq!(resolve_model_dir("", &dir).unwrap(), None);
        assert_eq!(
            resolve_model_dir("org/m", &dir).unwrap(),
            Some(dir.join("org--m"))
        );
        let direct = dir.join("org--m").display().to_string();
        assert_eq!(
            resolve_model_dir(&direct, &dir).unwrap(),
            Some(dir.join("org--m"))
        );
        let err = resolve_model_dir("missing", &dir).unwrap_err().to_string();
        assert!(err.contains("missing") && err.contains("models/fetch"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
