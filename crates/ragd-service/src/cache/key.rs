//! What both caches share: which requests may be cached, how keys are
//! hashed, and how answers are held (JSON text, capped in size).

use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::generation::GenSettings;

/// The largest share of a cache one entry may take: an answer bigger than
/// `max_bytes / ENTRY_SHARE` is not cached, so that a few huge answers (many
/// choices with logprobs run to tens of MB) cannot flush a cache or, through
/// it, hold that much memory.
pub const ENTRY_SHARE: u64 = 16;

/// Whether a request's answer may come from a cache: deterministic
/// sampling (greedy or seeded), no streaming, and the client did not ask
/// to bypass caches (`Cache-Control: no-cache`).
pub fn cacheable(settings: &GenSettings, client_bypass: bool) -> bool {
    let deterministic = settings.sampling.temperature == 0.0 || settings.sampling.seed.is_some();
    deterministic && !settings.stream && !client_bypass
}

/// A body as cached: its JSON text, or `None` when over `max_bytes`. Text,
/// not a `Value`, because text is what is weighed (a `Value` takes several
/// times its text's size).
pub fn serialize_capped(body: &Value, max_bytes: usize) -> Option<Arc<str>> {
    let text = body.to_string();
    (text.len() <= max_bytes).then(|| Arc::from(text))
}

/// A cached body back as a `Value`.
pub fn deserialize(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

/// SHA-256 over length-prefixed fields (so no two field lists collide).
pub fn digest(fields: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for field in fields {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field);
    }
    h.finalize().into()
}

/// Every generation setting, through its Debug form: a new field joins
/// the cache keys without anyone having to remember to add it. Except
/// `priority`, which only orders the engine's queue: the answer is the same.
pub fn settings_bytes(settings: &GenSettings) -> Vec<u8> {
    let settings = GenSettings {
        priority: 0,
        ..settings.clone()
    };
    format!("{settings:?}").into_bytes()
}
