//! Exact response cache for deterministic completions.
//!
//! A request whose answer is fixed by its inputs (greedy, or seeded) and
//! that does not stream is answered from the cache when the same tenant
//! asked the same thing before. "The same" is decided after the prompt is
//! built: the key hashes the tenant, the endpoint, the model, the prompt's
//! token ids (so a RAG prompt includes the retrieved text, and a changed
//! collection misses), the retrieved sources and every generation setting.
//! A tenant never gets another tenant's entry: the tenant is in the key.
//!
//! Because the engine is batch-invariant, a hit is exactly what a fresh run
//! would give; it only skips the generation. Only cacheable requests
//! ([`super::key::cacheable`]) are asked. Entries are bounded by their JSON size
//! and expire after a time to live.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, Registry};
use serde_json::Value;

use super::key::{deserialize, digest, serialize_capped, settings_bytes, ENTRY_SHARE};
use super::lookups::register_lookups;
use crate::generation::GenSettings;
use crate::tenant::Tenant;

/// How much the cache holds, and how long.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Bytes of response JSON.
    pub max_bytes: u64,
    pub ttl: Duration,
}

/// Cached response bodies (serialized JSON), by request key.
pub struct ResponseCache {
    entries: moka::sync::Cache<[u8; 32], Arc<str>>,
    max_entry_bytes: usize,
    lookups: IntCounterVec,
}

/// What a cached answer depends on.
pub struct CacheKeyParts<'a> {
    pub tenant: &'a Tenant,
    /// `chat` or `completions`.
    pub endpoint: &'static str,
    pub model: &'a str,
    pub prompt: &'a [u32],
    pub settings: &'a GenSettings,
    /// Anything else the body shows (a RAG answer's sources).
    pub extra: Option<&'a Value>,
}

/// A request's place in the cache.
pub struct CacheKey([u8; 32]);

/// What the cache says about a request.
pub enum Lookup {
    /// The answer given before.
    Hit(Value),
    /// Not there: store the fresh answer under this key.
    Miss(CacheKey),
}

impl ResponseCache {
    /// Holds up to `max_bytes` of response JSON, each entry for `ttl`.
    pub fn new(max_bytes: u64, ttl: Duration, registry: &Registry) -> prometheus::Result<Self> {
        let lookups = register_lookups(
            "ragd_response_cache_lookups_total",
            "Response cache lookups of cacheable requests, by result (hit, miss)",
            registry,
        )?;
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_, body: &Arc<str>| body.len().try_into().unwrap_or(u32::MAX))
            .time_to_live(ttl)
            .build();
        Ok(Self {
            entries,
            max_entry_bytes: usize::try_from(max_bytes / ENTRY_SHARE).unwrap_or(usize::MAX),
            lookups,
        })
    }

    /// The key of a request; only for requests that may be cached (see
    /// [`super::key::cacheable`]).
    pub fn key(&self, parts: CacheKeyParts<'_>) -> CacheKey {
        let prompt: Vec<u8> = parts.prompt.iter().flat_map(|id| id.to_le_bytes()).collect();
        let extra = parts.extra.map(Value::to_string).unwrap_or_default();
        CacheKey(digest(&[
            parts.tenant.as_str().as_bytes(),
            parts.endpoint.as_bytes(),
            parts.model.as_bytes(),
            &prompt,
            settings_bytes(parts.settings).as_slice(),
            extra.as_bytes(),
        ]))
    }

    /// Asks the cache about a cacheable request.
    pub fn lookup(&self, parts: CacheKeyParts<'_>) -> Lookup {
        let key = self.key(parts);
        match self.get(&key) {
            Some(body) => Lookup::Hit(body),
            None => Lookup::Miss(key),
        }
    }

    /// The cached body for `key`, if any (counted as a hit or a miss).
    pub fn get(&self, key: &CacheKey) -> Option<Value> {
        let found = self.entries.get(&key.0).and_then(|text| deserialize(&text));
        let result = if found.is_some() { "hit" } else { "miss" };
        self.lookups.with_label_values(&[result]).inc();
        found
    }

    /// Caches `body` unless it is over the per-entry cap.
    pub fn put(&self, key: CacheKey, body: &Value) {
        if let Some(text) = serialize_capped(body, self.max_entry_bytes) {
            self.entries.insert(key.0, text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::cacheable;
    use crate::generation::SamplingFields;

    fn settings(json: Value) -> GenSettings {
        let fields: SamplingFields = serde_json::from_value(json).unwrap();
        fields.validate(Some(8), None).unwrap()
    }

    fn parts<'a>(tenant: &'a Tenant, prompt: &'a [u32], settings: &'a GenSettings) -> CacheKeyParts<'a> {
        CacheKeyParts {
            tenant,
            endpoint: "chat",
            model: "m",
            prompt,
            settings,
            extra: None,
        }
    }

    #[test]
    fn only_deterministic_unstreamed_requests_get_a_key_and_every_input_changes_it() {
        let cache = ResponseCache::new(1 << 20, Duration::from_secs(60), &Registry::new()).unwrap();
        let (acme, globex) = (Tenant::new("acme"), Tenant::new("globex"));
        let greedy = settings(serde_json::json!({"temperature": 0}));
        let key = |t, p: &[u32], s: &GenSettings| cacheable(s, false).then(|| cache.key(parts(t, p, s)).0);
        let base = key(&acme, &[1, 2, 3], &greedy).unwrap();
        assert_eq!(key(&acme, &[1, 2, 3], &greedy), Some(base));
        assert_ne!(key(&globex, &[1, 2, 3], &greedy), Some(base));
        assert_ne!(key(&acme, &[1, 2, 4], &greedy), Some(base));
        let urgent = settings(serde_json::json!({"temperature": 0, "priority": -5}));
        assert_eq!(
            key(&acme, &[1, 2, 3], &urgent),
            Some(base),
            "priority does not change the answer"
        );
        let seeded = settings(serde_json::json!({"temperature": 0.8, "seed": 7}));
        assert!(key(&acme, &[1, 2, 3], &seeded).is_some_and(|k| k != base));
        let random = settings(serde_json::json!({"temperature": 0.8}));
        assert_eq!(key(&acme, &[1, 2, 3], &random), None);
        let streamed = settings(serde_json::json!({"temperature": 0, "stream": true}));
        assert_eq!(key(&acme, &[1, 2, 3], &streamed), None);
        assert!(!cacheable(&greedy, true), "the client asked to bypass");
        let sources = serde_json::json!([{"document_id": "a"}]);
        let with_sources = CacheKeyParts {
            extra: Some(&sources),
            ..parts(&acme, &[1, 2, 3], &greedy)
        };
        assert_ne!(cache.key(with_sources).0, base);
    }

    #[test]
    fn a_stored_body_comes_back_and_lookups_are_counted() {
        let registry = Registry::new();
        let cache = ResponseCache::new(1 << 20, Duration::from_secs(60), &registry).unwrap();
        let tenant = Tenant::new("acme");
        let greedy = settings(serde_json::json!({"temperature": 0}));
        let key = || cache.key(parts(&tenant, &[5], &greedy));
        assert_eq!(cache.get(&key()), None);
        let body = serde_json::json!({"choices": [{"text": "hi"}]});
        cache.put(key(), &body);
        assert_eq!(cache.get(&key()), Some(body));
        let count = |result: &str| cache.lookups.with_label_values(&[result]).get();
        assert_eq!((count("hit"), count("miss")), (1, 1));
        assert_eq!(registry.gather().len(), 1, "the counter is registered");
    }
}
