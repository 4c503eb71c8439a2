//! Per-key request rate limits.
//!
//! Each API key (in single-user mode: the one user) may make
//! `requests_per_minute` requests, in bursts of up to `burst`; the budget
//! refills evenly (GCRA, through `governor`). Past it a request gets 429
//! with `Retry-After` before any model or index work.
//!
//! Without a [`SharedLimiter`] limits are per replica: N stateless
//! replicas behind a balancer allow up to N times the rate. With one
//! (Redis: `--redis-url`) every replica draws on the same budget; while it
//! is unreachable each replica falls back to its own budget (which it did
//! not charge while the shared one answered).

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

type Limiter = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// The request budgets of every key.
pub struct RateLimits {
    limiter: Limiter,
    budget: Budget,
    shared: Option<Arc<dyn SharedLimiter>>,
}

/// A key's budget: `per_minute` requests, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub per_minute: u32,
    pub burst: u32,
}

impl Budget {
    /// The time one request's share of the budget takes to refill.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(60) / self.per_minute.max(1)
    }
}

/// A shared limiter's verdict; `None`: it could not be asked.
pub type LimitFuture<'a> = Pin<Box<dyn Future<Output = Option<Result<Allowed, Limited>>> + Send + 'a>>;

/// Budgets kept outside the process, shared by replicas.
pub trait SharedLimiter: Send + Sync {
    /// Takes one request from `key`'s budget; `None` when the store could
    /// not be asked in time (the caller falls back to its own budget).
    fn check<'a>(&'a self, key: &'a str, budget: Budget) -> LimitFuture<'a>;
}

/// A request within its key's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    /// Requests per minute the key may make.
    pub limit: u32,
    /// Requests the key may still make at once.
    pub remaining: u32,
}

/// A request past its key's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub limit: u32,
    /// When the key's next request is allowed.
    pub retry_after: Duration,
}

impl RateLimits {
    /// `burst` defaults to a whole minute's worth.
    pub fn new(per_minute: NonZeroU32, burst: Option<NonZeroU32>) -> Self {
        let burst = burst.unwrap_or(per_minute);
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        Self {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            budget: Budget {
                per_minute: per_minute.get(),
                burst: burst.get(),
            },
            shared: None,
        }
    }

    /// Budgets drawn from `shared` first, from this process's own while it
    /// cannot be asked.
    pub fn with_shared(mut self, shared: Arc<dyn SharedLimiter>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Takes one request from `key`'s budget, or says how long to wait.
    /// `key` is a stable id (the key's record id), never the secret.
    pub async fn check(&self, key: &str) -> Result<Allowed, Limited> {
        if let Some(shared) = &self.shared {
            if let Some(verdict) = shared.check(key, self.budget).await {
                return verdict;
            }
        }
        self.check_local(key)
    }

    /// [`Self::check`] against this process's budget only.
    pub fn check_local(&self, key: &str) -> Result<Allowed, Limited> {
        // Keys of revoked API keys would stay in the map forever; drop
        // those whose budget is full again once the map grows.
        if self.limiter.len() > 4096 {
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&key.to_string()) {
            Ok(state) => Ok(Allowed {
                limit: self.budget.per_minute,
                remaining: state.remaining_burst_capacity(),
            }),
            Err(not_until) => Err(Limited {
                limit: self.budget.per_minute,
                retry_after: not_until.wait_time_from(self.limiter.clock().now()),
            }),
        }
    }
}

impl Limited {
    /// Whole seconds until the next request is allowed (at least 1), for
    /// `Retry-After`.
    pub fn retry_after_secs(&self) -> u64 {
        whole_seconds(self.retry_after)
    }
}

/// `wait` in whole seconds, rounded up, at least 1: a `Retry-After` value.
pub fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// OpenAI's rate-limit headers, which its clients read.
pub fn add_headers(headers: &mut HeaderMap, limit: u32, remaining: u32) {
    headers.insert(
        HeaderName::from_static("x-ratelimit-limit-requests"),
        HeaderValue::from(limit),
    );
    headers.insert(
        HeaderName::from_static("x-ratelimit-remaining-requests"),
        HeaderValue::from(remaining),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn a_key_gets_its_burst_then_waits_and_other_keys_are_untouched() {
        let limits = RateLimits::new(nz(6), Some(nz(3)));
        for remaining in [2, 1, 0] {
            assert_eq!(limits.check_local("key_a"), Ok(Allowed { limit: 6, remaining }));
        }
        let limited = limits.check_local("key_a").unwrap_err();
        assert_eq!(limited.limit, 6);
        // Six a minute: one every ten seconds.
        assert!(
            limited.retry_after > Duration::from_secs(9) && limited.retry_after <= Duration::from_secs(10),
            "{limited:?}"
        );
        assert_eq!(limited.retry_after_secs(), 10);
        assert_eq!(limits.check_local("key_b").map(|a| a.remaining), Ok(2));
    }

    #[test]
    fn burst_defaults_to_a_minute_of_requests() {
        let limits = RateLimits::new(nz(4), None);
        for _ in 0..4 {
            assert!(limits.check_local("k").is_ok());
        }
        assert!(limits.check_local("k").is_err());
    }
}
