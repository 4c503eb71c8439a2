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
//!
//! With a [`SharedCache`] (Redis: `--redis-url`), a local miss asks the
//! shared store, and every answer stored here is stored there too, under
//! the same TTL and per-entry size cap: an answer one replica generated is
//! a hit on every other. A shared hit is not copied into the local cache
//! (so it never outlives its shared TTL); while the store is unreachable
//! the local cache answers alone.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, Registry};
use serde_json::Value;

use super::key::{deserialize, digest, serialize_capped, settings_bytes, ENTRY_SHARE};
use super::lookups::register_lookups;
use super::shared::{SharedCache, SharedKey};
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
    ttl: Duration,
    lookups: IntCounterVec,
    shared: Option<Shared>,
}

/// The shared store and its lookups by result (`hit`, `miss`,
/// `unavailable`).
struct Shared {
    store: Arc<dyn SharedCache>,
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

/// A request's place in the cache: its digest, and the tenant and model
/// that name its namespace in a shared store.
pub struct CacheKey {
    digest: [u8; 32],
    tenant: String,
    model: String,
}

impl CacheKey {
    /// The key in a shared store.
    pub fn shared(&self) -> SharedKey {
        SharedKey {
            tenant: self.tenant.clone(),
            model: self.model.clone(),
            digest: self.digest.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

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
            ttl,
            lookups,
            shared: None,
        })
    }

    /// Asks `store` on local misses and stores every answer there too;
    /// registers `ragd_response_cache_shared_lookups_total`.
    pub fn with_shared(
        mut self,
        store: Arc<dyn SharedCache>,
        registry: &Registry,
    ) -> prometheus::Result<Self> {
        let lookups = register_lookups(
            "ragd_response_cache_shared_lookups_total",
            "Lookups in the shared (Redis) response cache after a local miss, by result \
             (hit, miss, unavailable: the store could not be asked)",
            registry,
        )?;
        self.shared = Some(Shared { store, lookups });
        Ok(self)
    }

    /// The key of a request; only for requests that may be cached (see
    /// [`super::key::cacheable`]).
    pub fn key(&self, parts: CacheKeyParts<'_>) -> CacheKey {
        let prompt: Vec<u8> = parts.prompt.iter().flat_map(|id| id.to_le_bytes()).collect();
        let extra = parts.extra.map(Value::to_string).unwrap_or_default();
        let digest = digest(&[
            parts.tenant.as_str().as_bytes(),
            parts.endpoint.as_bytes(),
            parts.model.as_bytes(),
            &prompt,
            settings_bytes(parts.settings).as_slice(),
            extra.as_bytes(),
        ]);
        CacheKey {
            digest,
            tenant: parts.tenant.as_str().to_string(),
            model: parts.model.to_string(),
        }
    }

    /// Asks the cache about a cacheable request.
    pub async fn lookup(&self, parts: CacheKeyParts<'_>) -> Lookup {
        let key = self.key(parts);
        match self.get(&key).await {
            Some(body) => Lookup::Hit(body),
            None => Lookup::Miss(key),
        }
    }

    /// The cached body for `key`, if any (counted as a hit or a miss):
    /// the local entry, else the shared store's.
    pub async fn get(&self, key: &CacheKey) -> Option<Value> {
        let mut found = self.entries.get(&key.digest).and_then(|text| deserialize(&text));
        if let (None, Some(shared)) = (&found, &self.shared) {
            let answer = shared.store.get(&key.shared()).await;
            let result = match &answer {
                Ok(Some(_)) => "hit",
                Ok(None) => "miss",
                Err(_) => "unavailable",
            };
            shared.lookups.with_label_values(&[result]).inc();
            // Another replica may run a larger cap: the same one applies here.
            found = (answer.ok().flatten())
                .filter(|text| text.len() <= self.max_entry_bytes)
                .and_then(|text| deserialize(&text));
        }
        let result = if found.is_some() { "hit" } else { "miss" };
        self.lookups.with_label_values(&[result]).inc();
        found
    }

    /// Caches `body` (here and in the shared store) unless it is over the
    /// per-entry cap.
    pub async fn put(&self, key: CacheKey, body: &Value) {
        let Some(text) = serialize_capped(body, self.max_entry_bytes) else {
            return;
        };
        self.entries.insert(key.digest, text.clone());
        if let Some(shared) = &self.shared {
            shared.store.put(&key.shared(), text, self.ttl).await;
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
        let key =
            |t, p: &[u32], s: &GenSettings| cacheable(s, false).then(|| cache.key(parts(t, p, s)).digest);
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
        assert_ne!(cache.key(with_sources).digest, base);
    }

    #[tokio::test]
    async fn a_stored_body_comes_back_and_lookups_are_counted() {
        let registry = Registry::new();
        let cache = ResponseCache::new(1 << 20, Duration::from_secs(60), &registry).unwrap();
        let tenant = Tenant::new("acme");
        let greedy = settings(serde_json::json!({"temperature": 0}));
        let key = || cache.key(parts(&tenant, &[5], &greedy));
        assert_eq!(cache.get(&key()).await, None);
        let body = serde_json::json!({"choices": [{"text": "hi"}]});
        cache.put(key(), &body).await;
        assert_eq!(cache.get(&key()).await, Some(body));
        let count = |result: &str| cache.lookups.with_label_values(&[result]).get();
        assert_eq!((count("hit"), count("miss")), (1, 1));
        assert_eq!(registry.gather().len(), 1, "the counter is registered");
    }

    /// A shared store in memory that can be switched off.
    #[derive(Default)]
    struct MemoryStore {
        entries: std::sync::Mutex<std::collections::HashMap<String, (Arc<str>, Duration)>>,
        down: std::sync::atomic::AtomicBool,
    }

    impl MemoryStore {
        fn name(key: &SharedKey) -> String {
            format!("{}/{}/{}", key.tenant, key.model, key.digest)
        }
        fn is_down(&self) -> bool {
            self.down.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl SharedCache for MemoryStore {
        fn get<'a>(
            &'a self,
            key: &'a SharedKey,
        ) -> crate::cache::StoreFuture<'a, Result<Option<Arc<str>>, crate::cache::Unavailable>> {
            Box::pin(async move {
                if self.is_down() {
                    return Err(crate::cache::Unavailable);
                }
                Ok(self
                    .entries
                    .lock()
                    .unwrap()
                    .get(&Self::name(key))
                    .map(|e| e.0.clone()))
            })
        }
        fn put<'a>(
            &'a self,
            key: &'a SharedKey,
            body: Arc<str>,
            ttl: Duration,
        ) -> crate::cache::StoreFuture<'a, ()> {
            Box::pin(async move {
                if !self.is_down() {
                    self.entries.lock().unwrap().insert(Self::name(key), (body, ttl));
                }
            })
        }
    }

    #[tokio::test]
    async fn replicas_share_answers_per_tenant_with_ttl_and_size_cap_and_fall_back_when_the_store_is_down() {
        let store = Arc::new(MemoryStore::default());
        let ttl = Duration::from_secs(90);
        // 16 KiB of cache: entries up to 1 KiB.
        let replica = |registry: &Registry| {
            ResponseCache::new(16 << 10, ttl, registry)
                .unwrap()
                .with_shared(store.clone(), registry)
                .unwrap()
        };
        let (reg_a, reg_b) = (Registry::new(), Registry::new());
        let (a, b) = (replica(&reg_a), replica(&reg_b));
        let (acme, globex) = (Tenant::new("acme"), Tenant::new("globex"));
        let greedy = settings(serde_json::json!({"temperature": 0}));
        let body = serde_json::json!({"choices": [{"text": "shared"}]});

        a.put(a.key(parts(&acme, &[1], &greedy)), &body).await;
        let stored = store.entries.lock().unwrap().clone();
        assert_eq!(stored.len(), 1);
        let (name, (text, entry_ttl)) = stored.iter().next().unwrap();
        assert!(name.starts_with("acme/m/"), "{name}");
        assert_eq!((text.as_ref(), *entry_ttl), (body.to_string().as_str(), ttl));

        // Replica b never saw the request: the shared store answers it.
        assert_eq!(
            b.get(&b.key(parts(&acme, &[1], &greedy))).await,
            Some(body.clone())
        );
        // Another tenant asking the same gets nothing.
        assert_eq!(b.get(&b.key(parts(&globex, &[1], &greedy))).await, None);
        let shared = |c: &ResponseCache, result: &str| {
            c.shared
                .as_ref()
                .unwrap()
                .lookups
                .with_label_values(&[result])
                .get()
        };
        assert_eq!((shared(&b, "hit"), shared(&b, "miss")), (1, 1));

        // Over the per-entry cap: stored nowhere.
        let big = serde_json::json!({"choices": [{"text": "x".repeat(2000)}]});
        a.put(a.key(parts(&acme, &[2], &greedy)), &big).await;
        assert_eq!(store.entries.lock().unwrap().len(), 1);
        assert_eq!(a.get(&a.key(parts(&acme, &[2], &greedy))).await, None);

        // The store goes down: a's own answers still come from its local
        // cache, b's lookups are counted as unavailable and miss.
        store.down.store(true, std::sync::atomic::Ordering::SeqCst);
        let local = serde_json::json!({"choices": [{"text": "local"}]});
        a.put(a.key(parts(&acme, &[3], &greedy)), &local).await;
        assert_eq!(a.get(&a.key(parts(&acme, &[3], &greedy))).await, Some(local));
        assert_eq!(b.get(&b.key(parts(&acme, &[3], &greedy))).await, None);
        assert_eq!(shared(&b, "unavailable"), 1);
        assert_eq!(reg_b.gather().len(), 2, "both counters are registered");
    }
}
