//! Optional TOML configuration file.
//!
//! Its keys are the long flag names (`max_batch_tokens` or
//! `max-batch-tokens`). Each one becomes the default of the matching
//! `RAGD_*` variable, so the precedence is: flag, then environment, then
//! file, then built-in default — one mechanism, no second parser to keep in
//! step with the flags.

use std::path::Path;

use anyhow::{bail, Context};

/// Reads `path` and sets `RAGD_<KEY>` for every key not already set.
/// Must run before any other thread starts (it writes the environment).
pub fn apply_as_env_defaults(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("invalid TOML in {}", path.display()))?;
    for (key, value) in table {
        let var = format!("RAGD_{}", key.replace('-', "_").to_uppercase());
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            // A list (`guard = ["nanoguard", "trained-guard"]`) for a repeatable flag.
            toml::Value::Array(items) if items.iter().all(|v| v.is_str()) => {
                let items: Vec<&str> = items.iter().filter_map(toml::Value::as_str).collect();
                items.join(",")
            }
            other => bail!("config key `{key}`: expected a string, number or boolean, got {other}"),
        };
        if std::env::var_os(&var).is_none() {
            std::env::set_var(var, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_become_defaults_but_never_override_the_environment() {
        let dir = std::env::temp_dir().join(format!("ragd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ragd.toml");
        std::fs::write(
            &path,
            "cfg-test-port = 9000\ncfg_test_guard = \"none\"\ncfg_test_ratio = 0.25\n",
        )
        .unwrap();
        std::env::set_var("RAGD_CFG_TEST_GUARD", "from-env");
        apply_as_env_defaults(&path).unwrap();
        assert_eq!(std::env::var("RAGD_CFG_TEST_PORT").unwrap(), "9000");
        assert_eq!(std::env::var("RAGD_CFG_TEST_GUARD").unwrap(), "from-env");
        assert_eq!(std::env::var("RAGD_CFG_TEST_RATIO").unwrap(), "0.25");
        std::fs::write(&path, "cfg_test_list = [\"a\", \"b\"]\n").unwrap();
        apply_as_env_defaults(&path).unwrap();
        assert_eq!(std::env::var("RAGD_CFG_TEST_LIST").unwrap(), "a,b");
        std::fs::write(&path, "nested = { a = 1 }\n").unwrap();
        assert!(apply_as_env_defaults(&path).is_err());
        std::fs::write(&path, "not toml [").unwrap();
        assert!(apply_as_env_defaults(&path).is_err());
    }
}
