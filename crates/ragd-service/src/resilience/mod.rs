//! What keeps answers coming when a generator fails: a circuit breaker per
//! target and the retry schedule between attempts. Pure logic with the
//! clock passed in; the HTTP fallback to upstream servers uses it.

mod backoff;
mod breaker;

pub use backoff::RetryPolicy;
pub use breaker::{Breaker, BreakerConfig, BreakerState};
