//! Throttling of failed authentication, per client address.
//!
//! Each wrong or missing key costs its client address one unit of a budget
//! (GCRA through `governor`: `per_minute`, bursts of as many). Once the
//! budget is spent the address is shut out, right key or wrong, until it
//! refills: every request from it gets 429 with `Retry-After` before any key
//! is compared, so guessing keys at speed tells nothing. Addresses that
//! behave never notice it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

type Limiter = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

/// Shut-out addresses kept before expired ones are swept.
const SWEEP_AT: usize = 4096;

pub struct AuthThrottle {
    failures: Limiter,
    per_minute: u32,
    /// Addresses that spent their budget, and until when they are shut out.
    shut_out: Mutex<HashMap<IpAddr, Instant>>,
}

/// An address shut out for failing authentication too often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutOut {
    pub per_minute: u32,
    pub retry_after: Duration,
}

impl ShutOut {
    /// Whole seconds to wait (at least 1), for `Retry-After`.
    pub fn retry_after_secs(&self) -> u64 {
        crate::rate_limit::whole_seconds(self.retry_after)
    }
}

impl AuthThrottle {
    pub fn new(per_minute: NonZeroU32) -> Self {
        Self {
            failures: RateLimiter::keyed(Quota::per_minute(per_minute)),
            per_minute: per_minute.get(),
            shut_out: Mutex::new(HashMap::new()),
        }
    }

    /// `Err` while `addr` is shut out.
    pub fn check(&self, addr: IpAddr) -> Result<(), ShutOut> {
        let shut_out = self.shut_out.lock().unwrap_or_else(|e| e.into_inner());
        match shut_out.get(&addr) {
            Some(until) if *until > Instant::now() => Err(ShutOut {
                per_minute: self.per_minute,
                retry_after: *until - Instant::now(),
            }),
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication from `addr`; `Err` when that spent
    /// its budget (the address is shut out from now on, for the time said).
    pub fn failed(&self, addr: IpAddr) -> Result<(), ShutOut> {
        if self.failures.len() > SWEEP_AT {
            self.failures.retain_recent();
        }
        let Err(not_until) = self.failures.check_key(&addr) else {
            return Ok(());
        };
        let wait = not_until.wait_time_from(self.failures.clock().now());
        let now = Instant::now();
        let mut shut_out = self.shut_out.lock().unwrap_or_else(|e| e.into_inner());
        if shut_out.len() > SWEEP_AT {
            shut_out.retain(|_, until| *until > now);
        }
        shut_out.insert(addr, now + wait);
        Err(ShutOut {
            per_minute: self.per_minute,
            retry_after: wait,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_shut_out_after_its_budget_and_others_are_not() {
        let throttle = AuthThrottle::new(NonZeroU32::new(3).unwrap());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(throttle.check(a).is_ok());
            assert!(throttle.failed(a).is_ok());
        }
        let shut = throttle.failed(a).unwrap_err();
        assert!(shut.retry_after > Duration::from_secs(10), "{shut:?}");
        assert_eq!(
            shut.retry_after_secs(),
            shut.retry_after.as_secs_f64().ceil() as u64
        );
        assert!(throttle.check(a).is_err(), "even a right key waits");
        assert!(throttle.check(b).is_ok());
        assert!(throttle.failed(b).is_ok());
    }
}
