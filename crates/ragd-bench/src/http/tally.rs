//! Failures counted per cause, with the first message of each.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::RequestError;

/// Failed requests per cause (by [`ErrorCause::key`](super::ErrorCause::key)),
/// each with its first message.
#[derive(Debug, Clone, Default)]
pub struct ErrorTally {
    causes: BTreeMap<String, (usize, String)>,
    first: Option<String>,
    /// Whether any failure was the server refusing the load (429, 503).
    pub refused: bool,
}

impl ErrorTally {
    pub fn add(&mut self, e: &RequestError) {
        self.refused |= e.cause.is_refusal();
        self.first.get_or_insert_with(|| e.to_string());
        let entry = self.causes.entry(e.cause.key()).or_insert((0, e.detail.clone()));
        entry.0 += 1;
    }

    pub fn total(&self) -> usize {
        self.causes.values().map(|(n, _)| n).sum()
    }

    /// The first failure, cause and message.
    pub fn first(&self) -> Option<&str> {
        self.first.as_deref()
    }

    /// `cause: count` pairs, comma-separated (empty without failures).
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .causes
            .iter()
            .map(|(k, (n, _))| format!("{k}: {n}"))
            .collect();
        parts.join(", ")
    }

    /// `{cause: {"count": n, "first": message}}`.
    pub fn to_json(&self) -> Value {
        self.causes
            .iter()
            .map(|(k, (n, d))| (k.clone(), json!({"count": n, "first": d})))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// One line per cause: its count and first message.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        (self.causes.iter()).map(|(k, (n, d))| format!("{k} x{n}: {d}"))
    }
}
