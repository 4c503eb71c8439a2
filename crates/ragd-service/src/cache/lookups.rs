//! The lookup counter both caches keep: `result` is `hit` or `miss`.

use prometheus::{IntCounterVec, Opts, Registry};

/// Registers `name`, with both results present from the start at 0 (a hit
/// ratio needs no first hit).
pub(crate) fn register_lookups(
    name: &str,
    help: &str,
    registry: &Registry,
) -> prometheus::Result<IntCounterVec> {
    let lookups = IntCounterVec::new(Opts::new(name, help), &["result"])?;
    for result in ["hit", "miss"] {
        lookups.with_label_values(&[result]);
    }
    registry.register(Box::new(lookups.clone()))?;
    Ok(lookups)
}
