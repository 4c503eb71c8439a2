//! Per-target counters of the fallback path.

use std::sync::Arc;

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use super::Upstream;

pub struct UpstreamMetrics {
    pub attempts: IntCounterVec,
    pub failures: IntCounterVec,
    pub breaker_state: IntGaugeVec,
    pub fallbacks: IntCounterVec,
}

impl UpstreamMetrics {
    pub fn new(list: &[Arc<Upstream>], registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            attempts: IntCounterVec::new(
                Opts::new("ragd_upstream_attempts_total", "Requests sent to an upstream, retries included."),
                &["upstream"],
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "ragd_upstream_failures_total",
                    "Failed upstream attempts by reason (connect, timeout, overloaded, server_error, stream_interrupted).",
                ),
                &["upstream", "reason"],
            )?,
            breaker_state: IntGaugeVec::new(
                Opts::new(
                    "ragd_upstream_breaker_state",
                    "Circuit breaker of an upstream: 0 closed, 1 half-open, 2 open.",
                ),
                &["upstream"],
            )?,
            fallbacks: IntCounterVec::new(
                Opts::new(
                    "ragd_fallbacks_total",
                    "Requests a target could not answer that the next target in their route took over.",
                ),
                &["from", "to"],
            )?,
        };
        registry.register(Box::new(m.attempts.clone()))?;
        registry.register(Box::new(m.failures.clone()))?;
        registry.register(Box::new(m.breaker_state.clone()))?;
        registry.register(Box::new(m.fallbacks.clone()))?;
        for up in list {
            m.attempts.with_label_values(&[&up.name]).reset();
            m.breaker_state.with_label_values(&[&up.name]).set(0);
        }
        Ok(m)
    }
}
