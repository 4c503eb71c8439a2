//! The public id of a model loaded from a folder.

use std::path::Path;

use ragd_core::{ModelError, Result};

/// The folder's name (`models/cache/nanoguard` → `nanoguard`); a path with
/// no final component (`.`) is resolved first.
pub fn model_id(dir: &Path) -> Result<String> {
    let named = match dir.file_name() {
        Some(_) => dir.to_path_buf(),
        None => dir
            .canonicalize()
            .map_err(|e| ModelError::load(dir.display(), e))?,
    };
    named
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| ModelError::load(dir.display(), "the model folder has no name"))
}
