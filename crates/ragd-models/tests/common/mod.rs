//! Paths shared by ragd-models' integration tests.

#![allow(dead_code)] // each test binary uses a subset

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `path` inside model `name` of `$RAGD_MODELS_DIR` (default `models/cache`).
/// Panics with the fix when it is missing: a test must not pass without it.
pub fn model_file(name: &str, path: &str) -> PathBuf {
    let p = std::env::var_os("RAGD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("models/cache"))
        .join(name)
        .join(path);
    assert!(
        p.exists(),
        "{} is missing: run `models/fetch` first (or set RAGD_MODELS_DIR)",
        p.display()
    );
    p
}

/// A committed JSON fixture under `tests/fixtures/`.
pub fn fixture_json(name: &str) -> serde_json::Value {
    let path = repo_root().join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
