//! The exact response cache in Redis: one string per answer,
//! `ragd:cache:{tenant}:{model}:{sha256}` (tenant and model escaped, see
//! [`super::key_segment`]), written with `PSETEX` so each expires after
//! the cache's TTL. The per-entry size cap is the local cache's (checked
//! before either is written); the total is bounded by the TTL and by the
//! Redis server's own `maxmemory` with an eviction policy (the README
//! says which).

use std::sync::Arc;
use std::time::Duration;

use ragd_service::cache::{SharedCache, SharedKey, StoreFuture, Unavailable};
use redis::aio::ConnectionManager;

use super::key_segment;
use super::redis::Redis;

/// The exact cache's entries in Redis.
pub struct RedisCache {
    redis: Arc<Redis>,
}

impl RedisCache {
    pub fn new(redis: Arc<Redis>) -> Self {
        Self { redis }
    }
}

/// The Redis key of a cached answer.
pub fn entry_key(key: &SharedKey) -> String {
    format!(
        "ragd:cache:{}:{}:{}",
        key_segment(&key.tenant),
        key_segment(&key.model),
        key.digest
    )
}

impl SharedCache for RedisCache {
    fn get<'a>(&'a self, key: &'a SharedKey) -> StoreFuture<'a, Result<Option<Arc<str>>, Unavailable>> {
        Box::pin(async move {
            let name = entry_key(key);
            let get = |mut c: ConnectionManager| async move {
                redis::cmd("GET")
                    .arg(&name)
                    .query_async::<Option<String>>(&mut c)
                    .await
            };
            match self.redis.run("cache_get", get).await {
                Some(found) => Ok(found.map(Arc::from)),
                None => Err(Unavailable),
            }
        })
    }

    fn put<'a>(&'a self, key: &'a SharedKey, body: Arc<str>, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let name = entry_key(key);
            let ttl_ms = ttl.as_millis().max(1) as u64;
            let put = |mut c: ConnectionManager| async move {
                (redis::cmd("PSETEX").arg(&name).arg(ttl_ms).arg(body.as_bytes()))
                    .query_async::<()>(&mut c)
                    .await
            };
            self.redis.run("cache_put", put).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_are_namespaced_by_tenant_and_model() {
        let key = SharedKey {
            tenant: "acme:prod".into(),
            model: "smollm2".into(),
            digest: "ab12".into(),
        };
        assert_eq!(entry_key(&key), "ragd:cache:acme%3Aprod:smollm2:ab12");
    }
}
