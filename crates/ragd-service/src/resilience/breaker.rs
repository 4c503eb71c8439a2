//! A circuit breaker: after `failures` failures within `window` the target
//! is skipped for `cooldown`; then one probe request is let through, whose
//! outcome closes the breaker again or reopens it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures within `window` that open the breaker.
    pub failures: u32,
    pub window: Duration,
    /// How long an open breaker refuses before it lets a probe through.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            window: Duration::from_secs(30),
            cooldown: Duration::from_secs(15),
        }
    }
}

/// What a breaker does with the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests go through.
    Closed,
    /// One probe is (or may be) in flight; others are refused.
    HalfOpen,
    /// Requests are refused until the cool-down ends.
    Open,
}

impl BreakerState {
    /// The gauge value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { recent: VecDeque<Instant> },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::Closed {
                recent: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a request may go to the target now. An open breaker past
    /// its cool-down admits one probe and turns half-open.
    pub fn admit(&self, now: Instant) -> bool {
        let mut state = self.lock();
        match &mut *state {
            State::Closed { .. } => true,
            State::Open { until } if now >= *until => {
                *state = State::HalfOpen { probing: true };
                true
            }
            State::Open { .. } => false,
            State::HalfOpen { probing } if !*probing => {
                *probing = true;
                true
            }
            State::HalfOpen { .. } => false,
        }
    }

    /// The target answered: the breaker closes.
    pub fn success(&self) {
        *self.lock() = State::Closed {
            recent: VecDeque::new(),
        };
    }

    /// The target failed: counted in the window; a failed probe reopens.
    pub fn failure(&self, now: Instant) {
        let mut state = self.lock();
        let open = State::Open {
            until: now + self.config.cooldown,
        };
        match &mut *state {
            State::Closed { recent } => {
                recent.push_back(now);
                while recent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > self.config.window)
                {
                    recent.pop_front();
                }
                if recent.len() >= self.config.failures as usize {
                    *state = open;
                }
            }
            State::HalfOpen { .. } => *state = open,
            State::Open { .. } => {}
        }
    }

    /// An admitted request ended without a verdict on the target (the
    /// client went away): a probe slot is given back.
    pub fn release(&self) {
        if let State::HalfOpen { probing } = &mut *self.lock() {
            *probing = false;
        }
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        match &*self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if now >= *until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failures: 3,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
        })
    }

    #[test]
    fn opens_after_failures_in_the_window_and_probes_after_the_cooldown() {
        let (b, t0) = (breaker(), Instant::now());
        let at = |s: u64| t0 + Duration::from_secs(s);
        b.failure(at(0));
        b.failure(at(1));
        assert!(b.admit(at(1)));
        b.failure(at(2));
        assert_eq!(b.state(at(2)), BreakerState::Open);
        assert!(!b.admit(at(3)));
        // After the cool-down: one probe, the others still refused.
        assert!(b.admit(at(7)));
        assert!(!b.admit(at(7)));
        assert_eq!(b.state(at(7)), BreakerState::HalfOpen);
        // A failed probe reopens; a good one closes.
        b.failure(at(7));
        assert!(!b.admit(at(8)));
        assert!(b.admit(at(13)));
        b.success();
        assert_eq!(b.state(at(13)), BreakerState::Closed);
        assert!(b.admit(at(13)) && b.admit(at(13)));
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let (b, t0) = (breaker(), Instant::now());
        for s in [0, 11, 22, 33] {
            b.failure(t0 + Duration::from_secs(s));
        }
        assert_eq!(b.state(t0 + Duration::from_secs(33)), BreakerState::Closed);
    }

    #[test]
    fn a_probe_that_ends_without_a_verdict_frees_the_slot() {
        let (b, t0) = (breaker(), Instant::now());
        for _ in 0..3 {
            b.failure(t0);
        }
        let later = t0 + Duration::from_secs(6);
        assert!(b.admit(later));
        b.release();
        assert!(b.admit(later));
    }
}
