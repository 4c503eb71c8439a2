//! Per-key request rate limits.
//!
//! Each API key (in single-user mode: the one user) may make
//! `requests_per_minute` requests, in bursts of up to `burst`; the budget
//! refills evenly (GCRA, through `governor`). Past it a request gets 429
//! with `Retry-After` before any model or index work. Limits are per
//! replica: N stateless replicas behind a balancer allow up to N times the
//! rate, so set them per replica.

use std::num::NonZeroU32;
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
    per_minute: u32,
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
        let quota = Quota::per_minute(per_minute).allow_burst(burst.unwrap_or(per_minute));
        Self {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            per_minute: per_minute.get(),
        }
    }

    /// Takes one request from `key`'s budget, or says how long to wait.
    /// `key` is a stable id (the key's record id), never the secret.
    pub fn check(&self, key: &str) -> Result<Allowed, Limited> {
        // Keys of revoked API keys would stay in the map forever; drop
        // those whose budget is full again once the map grows.
        if self.limiter.len() > 4096 {
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&key.to_string()) {
            Ok(state) => Ok(Allowed {
                limit: self.per_minute,
                remaining: state.remaining_burst_capacity(),
            }),
            Err(not_until) => Err(Limited {
                limit: self.per_minute,
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
            assert_eq!(limits.check("key_a"), Ok(Allowed { limit: 6, remaining }));
        }
        let limited = limits.check("key_a").unwrap_err();
        assert_eq!(limited.limit, 6);
        // Six a minute: one every ten seconds.
        assert!(
            limited.retry_after > Duration::from_secs(9) && limited.retry_after <= Duration::from_secs(10),
            "{limited:?}"
        );
        assert_eq!(limited.retry_after_secs(), 10);
        assert_eq!(limits.check("key_b").map(|a| a.remaining), Ok(2));
    }

    #[test]
    fn burst_defaults_to_a_minute_of_requests() {
        let limits = RateLimits::new(nz(4), None);
        for _ in 0..4 {
            assert!(limits.check("k").is_ok());
        }
        assert!(limits.check("k").is_err());
    }
}
