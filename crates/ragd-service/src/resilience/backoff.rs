//! How often and after how long a failed attempt is retried: exponential
//! backoff with jitter, bounded, honouring the server's `Retry-After`.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per target, the first included.
    pub attempts: u32,
    /// Delay before the first retry (doubled for each next one).
    pub base: Duration,
    /// Longest delay; a `Retry-After` longer than this skips the target.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 2,
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the second attempt),
    /// or `None` when no more attempts are left or the server asks for a
    /// longer wait than `max`. `jitter` in [0, 1) spreads retries of many
    /// clients over the upper half of the backoff.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, jitter: f64) -> Option<Duration> {
        if retry >= self.attempts {
            return None;
        }
        if let Some(wait) = retry_after {
            return (wait <= self.max).then_some(wait);
        }
        let backoff = self
            .base
            .saturating_mul(1u32 << (retry - 1).min(16))
            .min(self.max);
        Some(backoff.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_exponentially_within_bounds() {
        let p = RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(100),
            max: Duration::from_millis(300),
        };
        assert_eq!(p.delay(1, None, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(p.delay(2, None, 1.0), Some(Duration::from_millis(200)));
        assert_eq!(p.delay(3, None, 1.0), Some(Duration::from_millis(300)));
        assert_eq!(p.delay(3, None, 0.0), Some(Duration::from_millis(150)));
        assert_eq!(p.delay(4, None, 0.5), None);
        // Retry-After wins when it fits, and skips the target when not.
        let wait = Duration::from_millis(250);
        assert_eq!(p.delay(1, Some(wait), 0.3), Some(wait));
        assert_eq!(p.delay(1, Some(Duration::from_secs(9)), 0.3), None);
    }
}
