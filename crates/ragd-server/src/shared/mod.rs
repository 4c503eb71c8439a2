//! State shared by replicas through Redis (`--redis-url`): per-key rate
//! limits ([`redis_limits`]) and the exact response cache
//! ([`redis_cache`]), over one connection with its health ([`redis`]).
//!
//! Redis is an optimisation of correctness across replicas, never a
//! dependency of serving: every call is bounded by a short timeout, and
//! while Redis is unreachable each replica limits per process and caches
//! locally, says so once in a warning and in `ragd_redis_up`, and goes back
//! to Redis when it answers again.
//!
//! Every key starts with `ragd:`; user-given parts (API key ids, tenants,
//! models) are escaped so that none can reach into another's namespace.

pub mod redis;
pub mod redis_cache;
pub mod redis_limits;

pub use redis::Redis;
pub use redis_cache::RedisCache;
pub use redis_limits::RedisLimits;

/// `part` as one segment of a `:`-separated key: bytes outside
/// `[A-Za-z0-9._-]` become `%XX`, so a `:` in a tenant name cannot forge
/// another namespace.
pub fn key_segment(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for b in part.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_plain_names_and_escape_separators() {
        assert_eq!(key_segment("acme-1.prod_x"), "acme-1.prod_x");
        assert_eq!(key_segment("a:b"), "a%3Ab");
        assert_eq!(key_segment("100%"), "100%25");
        assert_ne!(key_segment("a:b"), key_segment("a%3Ab"));
        assert_eq!(key_segment("é"), "%C3%A9");
    }
}
