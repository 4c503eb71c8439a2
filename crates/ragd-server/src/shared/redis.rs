//! The one Redis connection of a replica, its timeouts and its health.
//!
//! redis-rs's `ConnectionManager` multiplexes every request's commands
//! over one connection (pipelined, which is how Redis, single-threaded,
//! is used best; a pool of connections buys nothing) and reconnects by
//! itself after an I/O error. It connects lazily, so a replica starts
//! while Redis is down.
//!
//! Each call is bounded by `--redis-timeout-ms`. A failed or late call
//! marks Redis down (a warning on the change, `ragd_redis_up` 0,
//! `ragd_redis_errors_total{op}`); while down, callers skip Redis at once
//! and one call a second probes it, so an outage costs a request at most
//! one timeout, and usually nothing. The first call that succeeds marks it
//! up again (an info line). A background ping keeps the gauge true when no
//! traffic comes.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisResult;

use crate::config::RedisConfig;

/// How long callers skip Redis after a failure before one probes it.
const RETRY_AFTER: Duration = Duration::from_secs(1);

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// A replica's Redis.
pub struct Redis {
    conn: ConnectionManager,
    timeout: Duration,
    state: AtomicU8,
    /// Milliseconds since `epoch` before which callers skip Redis.
    retry_at_ms: AtomicU64,
    epoch: Instant,
    up: IntGauge,
    errors: IntCounterVec,
}

impl Redis {
    /// A replica's Redis at `config.url` (a bad URL fails here: at start),
    /// not connected yet; registers `ragd_redis_up` and
    /// `ragd_redis_errors_total`. Needs a Tokio runtime.
    pub fn new(config: &RedisConfig, registry: &Registry) -> anyhow::Result<Self> {
        let client = redis::Client::open(config.url.0.as_str())
            .map_err(|e| anyhow::anyhow!("--redis-url is not a Redis URL: {e}"))?;
        // Reconnection is tried once per failed call (no retry loop that
        // would hold callers); the timeouts are the caller's bound too.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)?;
        let up = IntGauge::new(
            "ragd_redis_up",
            "1 while the Redis of --redis-url answers; 0 before its first answer and while it is \
             unreachable (rate limits then per process, the exact cache local only)",
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "ragd_redis_errors_total",
                "Redis calls that failed or timed out, by operation (rate_limit, cache_get, \
                 cache_put, ping); each fell back to per-process state",
            ),
            &["op"],
        )?;
        registry.register(Box::new(up.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        for op in ["rate_limit", "cache_get", "cache_put", "ping"] {
            errors.with_label_values(&[op]);
        }
        Ok(Self {
            conn,
            timeout: config.timeout,
            state: AtomicU8::new(UNKNOWN),
            retry_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            up,
            errors,
        })
    }

    /// Runs `call` on the connection within the timeout. `None`: Redis is
    /// marked down (skipped), or the call failed or timed out.
    pub async fn run<T, F, Fut>(&self, op: &'static str, call: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.may_try() {
            return None;
        }
        match tokio::time::timeout(self.timeout, call(self.conn.clone())).await {
            Ok(Ok(value)) => {
                self.mark_up();
                Some(value)
            }
            Ok(Err(e)) => {
                self.mark_down(op, &e.to_string());
                None
            }
            Err(_) => {
                self.mark_down(op, &format!("no answer within {:?}", self.timeout));
                None
            }
        }
    }

    /// Whether Redis answers a `PING` now (marking it up or down).
    pub async fn ping(&self) -> bool {
        let ping =
            |mut c: ConnectionManager| async move { redis::cmd("PING").query_async::<String>(&mut c).await };
        self.run("ping", ping).await.is_some()
    }

    /// Pings Redis every `every` while the runtime lives: `ragd_redis_up`
    /// stays true without traffic, and a replica reconnects before the
    /// next request needs it.
    pub fn spawn_health_checks(self: &std::sync::Arc<Self>, every: Duration) {
        let redis = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(redis) = redis.upgrade() else { return };
                redis.ping().await;
            }
        });
    }

    /// Whether this call may use Redis: always while it is up (or not
    /// tried yet); while down, one call per [`RETRY_AFTER`].
    fn may_try(&self) -> bool {
        if self.state.load(Ordering::Acquire) != DOWN {
            return true;
        }
        let now = self.now_ms();
        let retry_at = self.retry_at_ms.load(Ordering::Acquire);
        now >= retry_at
            && (self.retry_at_ms)
                .compare_exchange(
                    retry_at,
                    now + RETRY_AFTER.as_millis() as u64,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn mark_up(&self) {
        self.up.set(1);
        match self.state.swap(UP, Ordering::AcqRel) {
            UP => {}
            DOWN => tracing::info!("redis reachable again: rate limits and the exact cache shared again"),
            _ => tracing::info!("redis connected: rate limits and the exact cache shared across replicas"),
        }
    }

    fn mark_down(&self, op: &'static str, error: &str) {
        self.errors.with_label_values(&[op]).inc();
        self.up.set(0);
        let retry_at = self.now_ms() + RETRY_AFTER.as_millis() as u64;
        self.retry_at_ms.fetch_max(retry_at, Ordering::AcqRel);
        if self.state.swap(DOWN, Ordering::AcqRel) != DOWN {
            tracing::warn!(
                op,
                error,
                "redis unreachable: rate limits per process and the exact cache local only until it answers again"
            );
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}
