//! Prometheus handles of the generation engine. The server registers them.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts};

use crate::metrics::QueueMetrics;

/// Metrics of one generation engine; the only label is the const `model`
/// label (the model id, chosen by the operator). Never a per-request or
/// per-tenant label.
#[derive(Clone)]
pub struct GenerationMetrics {
    /// Submit to first token.
    pub time_to_first_token: Histogram,
    /// Between consecutive tokens of one request.
    pub inter_token_latency: Histogram,
    /// Submit to the end of the request.
    pub e2e_request_latency: Histogram,
    /// Prompt tokens of requests whose prefill completed.
    pub prompt_tokens: IntCounter,
    /// Tokens generated.
    pub generation_tokens: IntCounter,
    /// Sequences holding KV blocks.
    pub running: IntGauge,
    /// Sequences waiting to start (or restart, after a preemption).
    pub waiting: IntGauge,
    pub kv_blocks_used: IntGauge,
    /// KV cache blocks in all (what `kv_blocks_used` can reach).
    pub kv_blocks_capacity: IntGauge,
    /// Sequences evicted from the KV cache to make room (recomputed later).
    pub preemptions: IntCounter,
    /// Tokens of admitted sequences looked up in the prefix cache, and
    /// those found there (not prefilled).
    pub prefix_cache_queried_tokens: IntCounter,
    pub prefix_cache_hit_tokens: IntCounter,
    /// Cached KV blocks taken back for new content (LRU).
    pub prefix_cache_evictions: IntCounter,
    /// KV blocks in the prefix cache (held by a sequence or not).
    pub prefix_cache_blocks: IntGauge,
    /// Sequences per model step.
    pub batch_size: Histogram,
    /// Tokens per model step.
    pub step_tokens: Histogram,
    /// The waiting queue's bound and its refusals.
    pub queue: QueueMetrics,
}

impl GenerationMetrics {
    /// Unregistered metrics labelled with the model id.
    pub fn new(model: &str) -> Self {
        let hist = |name: &str, help: &str, buckets: Vec<f64>| {
            Histogram::with_opts(
                HistogramOpts::new(name, help)
                    .const_label("model", model)
                    .buckets(buckets),
            )
            .expect("static metric")
        };
        let counter = |name: &str, help: &str| {
            IntCounter::with_opts(Opts::new(name, help).const_label("model", model)).expect("static metric")
        };
        let gauge = |name: &str, help: &str| {
            IntGauge::with_opts(Opts::new(name, help).const_label("model", model)).expect("static metric")
        };
        let secs = prometheus::exponential_buckets(0.001, 2.0, 16).expect("static buckets");
        let itl = prometheus::exponential_buckets(0.0005, 2.0, 14).expect("static buckets");
        let pow2 = |n| prometheus::exponential_buckets(1.0, 2.0, n).expect("static buckets");
        Self {
            time_to_first_token: hist(
                "ragd_time_to_first_token_seconds",
                "Time from submit to the first generated token",
                secs.clone(),
            ),
            inter_token_latency: hist(
                "ragd_inter_token_latency_seconds",
                "Time between consecutive generated tokens of a request",
                itl,
            ),
            e2e_request_latency: hist(
                "ragd_e2e_request_latency_seconds",
                "Time from submit to the end of a generation request",
                secs,
            ),
            prompt_tokens: counter("ragd_prompt_tokens_total", "Prompt tokens prefilled"),
            generation_tokens: counter("ragd_generation_tokens_total", "Tokens generated"),
            running: gauge("ragd_running_sequences", "Sequences running (holding KV blocks)"),
            waiting: gauge("ragd_waiting_sequences", "Sequences waiting to start or restart"),
            kv_blocks_used: gauge("ragd_kv_blocks_used", "KV cache blocks in use"),
            kv_blocks_capacity: gauge("ragd_kv_blocks_capacity", "KV cache blocks in all"),
            preemptions: counter(
                "ragd_preemptions_total",
                "Sequences evicted from the KV cache to make room (recomputed later)",
            ),
            prefix_cache_queried_tokens: counter(
                "ragd_prefix_cache_queried_tokens_total",
                "Tokens of admitted sequences looked up in the prefix cache",
            ),
            prefix_cache_hit_tokens: counter(
                "ragd_prefix_cache_hit_tokens_total",
                "Tokens found in the prefix cache at admission (not prefilled)",
            ),
            prefix_cache_evictions: counter(
                "ragd_prefix_cache_evictions_total",
                "Cached KV blocks evicted to make room (least recently used first)",
            ),
            prefix_cache_blocks: gauge(
                "ragd_prefix_cache_blocks",
                "KV cache blocks held in the prefix cache",
            ),
            batch_size: hist(
                "ragd_generation_batch_size",
                "Sequences per generation step",
                pow2(10),
            ),
            step_tokens: hist(
                "ragd_generation_step_tokens",
                "Tokens per generation step",
                pow2(14),
            ),
            queue: QueueMetrics::new(model),
        }
    }

    /// Every collector, for registration.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.time_to_first_token.clone()),
            Box::new(self.inter_token_latency.clone()),
            Box::new(self.e2e_request_latency.clone()),
            Box::new(self.prompt_tokens.clone()),
            Box::new(self.generation_tokens.clone()),
            Box::new(self.running.clone()),
            Box::new(self.waiting.clone()),
            Box::new(self.kv_blocks_used.clone()),
            Box::new(self.kv_blocks_capacity.clone()),
            Box::new(self.preemptions.clone()),
            Box::new(self.prefix_cache_queried_tokens.clone()),
            Box::new(self.prefix_cache_hit_tokens.clone()),
            Box::new(self.prefix_cache_evictions.clone()),
            Box::new(self.prefix_cache_blocks.clone()),
            Box::new(self.batch_size.clone()),
            Box::new(self.step_tokens.clone()),
            Box::new(self.queue.capacity.clone()),
            Box::new(self.queue.rejections.clone()),
        ]
    }
}
