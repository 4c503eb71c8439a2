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
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("invalid TOML in {}", path.display()))?;
    for (key, value) in table {
        let var = format!("RAGD_{}", key.replace('-', "_").to_uppercase());
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => bail!("config key `{key}`: expected a string, number or boolean, got {other}"),
        };
        if std::env::var_os(&var).is_none() {
            std::env::set_var(var, value);
        }
    }
    Ok(())
}
