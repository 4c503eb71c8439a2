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
//! would give; it only skips the generation. A request with
//! `Cache-Control: no-cache` or `no-store` bypasses the cache. Entries are
//! bounded by their JSON size and expire after a time to live.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use prometheus::{IntCounterVec, Opts, Registry};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::auth::Tenant;
use crate::generate::GenSettings;

/// Response header saying whether a cache answered (`hit`, or
/// `semantic-hit` for the semantic cache) or the model did (`miss`).
pub const CACHE_HEADER: HeaderName = HeaderName::from_static("x-ragd-cache");

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

/// The largest share of a cache one entry may take: an answer bigger than
/// `max_bytes / ENTRY_SHARE` is not cached, so that a few huge answers (many
/// choices with logprobs run to tens of MB) cannot flush a cache or, through
/// it, hold that much memory.
pub const ENTRY_SHARE: u64 = 16;

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

impl ResponseCache {
    /// Holds up to `max_bytes` of response JSON, each entry for `ttl`.
    pub fn new(max_bytes: u64, ttl: Duration, registry: &Registry) -> prometheus::Result<Self> {
        let lookups = IntCounterVec::new(
            Opts::new(
                "ragd_response_cache_lookups_total",
                "Response cache lookups of cacheable requests, by result (hit, miss)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(lookups.clone()))?;
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

    /// The key of a request that may be cached (see [`cacheable`]).
    pub fn key(&self, parts: CacheKeyParts<'_>, headers: &HeaderMap) -> Option<CacheKey> {
        if !cacheable(parts.settings, headers) {
            return None;
        }
        let prompt: Vec<u8> = parts.prompt.iter().flat_map(|id| id.to_le_bytes()).collect();
        let extra = parts.extra.map(Value::to_string).unwrap_or_default();
        Some(CacheKey(digest(&[
            parts.tenant.as_str().as_bytes(),
            parts.endpoint.as_bytes(),
            parts.model.as_bytes(),
            &prompt,
            settings_bytes(parts.settings).as_slice(),
            extra.as_bytes(),
        ])))
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

/// Whether a request's answer may come from a cache: deterministic
/// sampling (greedy or seeded), no streaming, and no `Cache-Control:
/// no-cache` / `no-store`.
pub fn cacheable(settings: &GenSettings, headers: &HeaderMap) -> bool {
    let deterministic = settings.sampling.temperature == 0.0 || settings.sampling.seed.is_some();
    deterministic && !settings.stream && !bypass(headers)
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
/// the cache keys without anyone having to remember to add it.
pub fn settings_bytes(settings: &GenSettings) -> Vec<u8> {
    format!("{settings:?}").into_bytes()
}

/// Whether the request asks not to be answered from a cache.
fn bypass(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| matches!(d.trim().to_ascii_lowercase().as_str(), "no-cache" | "no-store"))
}

/// Asks the cache about a request. `Err` holds the cached answer, under the
/// request's own `id` and `created`; `Ok` holds the key to store the fresh
/// answer under (`None`: no cache, or the request is not cacheable).
pub fn lookup(
    cache: Option<&ResponseCache>,
    parts: CacheKeyParts<'_>,
    headers: &HeaderMap,
    id: &str,
    created: u64,
) -> Result<Option<CacheKey>, Box<Response>> {
    let Some((cache, key)) = cache.and_then(|c| Some((c, c.key(parts, headers)?))) else {
        return Ok(None);
    };
    match cache.get(&key) {
        Some(body) => Err(Box::new(reissue(body, id, created, "hit"))),
        None => Ok(Some(key)),
    }
}

/// A cached body as the answer to a new request: its own `id` and
/// `created`, and `x-ragd-cache: {label}`.
pub fn reissue(mut body: Value, id: &str, created: u64, label: &'static str) -> Response {
    body["id"] = id.into();
    body["created"] = created.into();
    respond(body, label)
}

/// The response to a request the model answered; stored first when the
/// request is cacheable (`key` is set).
pub fn store_and_respond(cache: Option<&ResponseCache>, key: Option<CacheKey>, body: Value) -> Response {
    match (cache, key) {
        (Some(cache), Some(key)) => {
            cache.put(key, &body);
            respond(body, "miss")
        }
        _ => axum::Json(body).into_response(),
    }
}

/// A JSON response marked with what answered it (`hit`, `semantic-hit`,
/// `miss`).
fn respond(body: Value, label: &'static str) -> Response {
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(CACHE_HEADER, HeaderValue::from_static(label));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::SamplingFields;

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
        let none = HeaderMap::new();
        let (acme, globex) = (Tenant::new("acme"), Tenant::new("globex"));
        let greedy = settings(serde_json::json!({"temperature": 0}));
        let key = |t, p: &[u32], s| cache.key(parts(t, p, s), &none).map(|k| k.0);
        let base = key(&acme, &[1, 2, 3], &greedy).unwrap();
        assert_eq!(key(&acme, &[1, 2, 3], &greedy), Some(base));
        assert_ne!(key(&globex, &[1, 2, 3], &greedy), Some(base));
        assert_ne!(key(&acme, &[1, 2, 4], &greedy), Some(base));
        let seeded = settings(serde_json::json!({"temperature": 0.8, "seed": 7}));
        assert!(key(&acme, &[1, 2, 3], &seeded).is_some_and(|k| k != base));
        let random = settings(serde_json::json!({"temperature": 0.8}));
        assert_eq!(key(&acme, &[1, 2, 3], &random), None);
        let streamed = settings(serde_json::json!({"temperature": 0, "stream": true}));
        assert_eq!(key(&acme, &[1, 2, 3], &streamed), None);
        let mut no_cache = HeaderMap::new();
        no_cache.insert("cache-control", HeaderValue::from_static("max-age=0, No-Cache"));
        assert!(cache.key(parts(&acme, &[1, 2, 3], &greedy), &no_cache).is_none());
        let sources = serde_json::json!([{"document_id": "a"}]);
        let with_sources = CacheKeyParts {
            extra: Some(&sources),
            ..parts(&acme, &[1, 2, 3], &greedy)
        };
        assert_ne!(cache.key(with_sources, &none).map(|k| k.0), Some(base));
    }

    #[test]
    fn a_stored_body_comes_back_and_lookups_are_counted() {
        let registry = Registry::new();
        let cache = ResponseCache::new(1 << 20, Duration::from_secs(60), &registry).unwrap();
        let tenant = Tenant::new("acme");
        let greedy = settings(serde_json::json!({"temperature": 0}));
        let key = || {
            cache
                .key(parts(&tenant, &[5], &greedy), &HeaderMap::new())
                .unwrap()
        };
        assert_eq!(cache.get(&key()), None);
        let body = serde_json::json!({"choices": [{"text": "hi"}]});
        cache.put(key(), &body);
        assert_eq!(cache.get(&key()), Some(body));
        let count = |result: &str| cache.lookups.with_label_values(&[result]).get();
        assert_eq!((count("hit"), count("miss")), (1, 1));
        assert_eq!(registry.gather().len(), 1, "the counter is registered");
    }
}
