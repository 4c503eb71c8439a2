//! Per-key rate limits in Redis, the same GCRA as the per-process limiter
//! (`governor`), run atomically by one Lua script on Redis's own clock (so
//! replicas' clocks need not agree).
//!
//! A key's state is one integer, its theoretical arrival time (TAT) in
//! microseconds, at `ragd:rl:{key id}`; it expires when the key's budget
//! is full again, so idle keys cost nothing.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

use super::key_segment;
use super::redis::Redis;
use crate::rate_limit::{Allowed, Budget, LimitFuture, Limited, SharedLimiter};

/// GCRA: with emission interval T (ARGV[1], µs) and burst b (ARGV[2]), a
/// request at `now` is allowed when `TAT - now <= T * (b - 1)`, and then
/// moves TAT to `max(TAT, now) + T`. Returns `{1, remaining}` or
/// `{0, microseconds until allowed}`. Integers are formatted with `%.0f`:
/// Lua's default number format would round 16-digit microseconds.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then
  return {0, tat - now - tolerance}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((tolerance + interval - (new_tat - now)) / interval)}
"#;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA));

/// Rate limits kept in Redis, shared by every replica.
pub struct RedisLimits {
    redis: Arc<Redis>,
}

impl RedisLimits {
    pub fn new(redis: Arc<Redis>) -> Self {
        Self { redis }
    }
}

/// The Redis key of an API key's budget.
pub fn budget_key(key_id: &str) -> String {
    format!("ragd:rl:{}", key_segment(key_id))
}

impl SharedLimiter for RedisLimits {
    fn check<'a>(&'a self, key: &'a str, budget: Budget) -> LimitFuture<'a> {
        Box::pin(async move {
            let name = budget_key(key);
            let interval_us = budget.interval().as_micros() as u64;
            let run = |mut c: ConnectionManager| async move {
                (SCRIPT.key(&name).arg(interval_us).arg(budget.burst))
                    .invoke_async::<(i64, i64)>(&mut c)
                    .await
            };
            let (allowed, n) = self.redis.run("rate_limit", run).await?;
            let limit = budget.per_minute;
            Some(if allowed == 1 {
                Ok(Allowed {
                    limit,
                    remaining: u32::try_from(n.max(0)).unwrap_or(u32::MAX),
                })
            } else {
                Err(Limited {
                    limit,
                    retry_after: Duration::from_micros(n.max(0) as u64),
                })
            })
        })
    }
}
