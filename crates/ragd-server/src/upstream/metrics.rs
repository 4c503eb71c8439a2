//! Per-target counters of the fallback path.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// The `reason` of a failed attempt (`forward.rs`'s `Failure::reason`,
/// and an interrupted stream's).
const FAILURE_REASONS: [&str; 6] = [
    "connect",
    "timeout",
    "overloaded",
    "server_error",
    "rejected",
    "stream_interrupted",
];

pub struct UpstreamMetrics {
    pub attempts: IntCounterVec,
    pub failures: IntCounterVec,
    pub breaker_state: IntGaugeVec,
    pub fallbacks: IntCounterVec,
}

impl UpstreamMetrics {
    /// Registers the series, at 0 for each of `upstreams` (their names).
    pub fn new<'a>(
        upstreams: impl IntoIterator<Item = &'a str>,
        registry: &Registry,
    ) -> prometheus::Result<Self> {
        let m = Self {
            attempts: IntCounterVec::new(
                Opts::new("ragd_upstream_attempts_total", "Requests sent to an upstream, retries included."),
                &["upstream"],
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "ragd_upstream_failures_total",
                    "Failed upstream attempts by reason (connect, timeout, overloaded, server_error, rejected, stream_interrupted).",
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
        // Every upstream's series exist from the start, at 0, so that rates
        // and the dashboard need no first event.
        for name in upstreams {
            m.attempts.with_label_values(&[name]).reset();
            m.breaker_state.with_label_values(&[name]).set(0);
            m.fallbacks.with_label_values(&["local", name]).reset();
            for reason in FAILURE_REASONS {
                m.failures.with_label_values(&[name, reason]).reset();
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, TextEncoder};

    use super::*;
    use crate::config::{UpstreamSpec, UpstreamsConfig};
    use crate::upstream::Upstreams;

    #[test]
    fn every_upstream_has_its_series_from_the_start() {
        let config = UpstreamsConfig {
            upstreams: vec![UpstreamSpec {
                name: "spare".into(),
                url: "http://127.0.0.1:9".into(),
                key: None,
                key_file: None,
                models: Some(vec!["some-model".into()]),
            }],
            ..UpstreamsConfig::default()
        };
        let registry = Registry::new();
        let upstreams = Upstreams::new(&config, &registry).unwrap().unwrap();
        upstreams.refresh_metrics();
        let mut text = Vec::new();
        TextEncoder::new().encode(&registry.gather(), &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        let mut expected = vec![
            "ragd_upstream_attempts_total{upstream=\"spare\"} 0".to_string(),
            "ragd_upstream_breaker_state{upstream=\"spare\"} 0".to_string(),
            "ragd_fallbacks_total{from=\"local\",to=\"spare\"} 0".to_string(),
        ];
        expected.extend(
            FAILURE_REASONS
                .map(|r| format!("ragd_upstream_failures_total{{reason=\"{r}\",upstream=\"spare\"}} 0")),
        );
        for line in expected {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
