//! Prometheus handles a worker updates. The server registers them.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};

use crate::fair::Refused;
use crate::EngineError;

/// Per-worker metrics; the `model` label is the model id (bounded, chosen by
/// the operator).
#[derive(Clone)]
pub struct WorkerMetrics {
    /// Sequences per forward batch.
    pub batch_size: Histogram,
    /// Tokens per forward batch.
    pub batch_tokens: Histogram,
    /// Requests waiting in the queue.
    pub queue_depth: IntGauge,
    /// Time a request waited before its batch started.
    pub queue_seconds: Histogram,
    /// Forward time per batch.
    pub forward_seconds: Histogram,
    /// The queue's bound and its refusals.
    pub queue: QueueMetrics,
}

impl WorkerMetrics {
    /// Unregistered metrics labelled with the model id.
    pub fn new(model: &str) -> Self {
        let opts = |name: &str, help: &str| HistogramOpts::new(name, help).const_label("model", model);
        let pow2 = prometheus::exponential_buckets(1.0, 2.0, 10).expect("static buckets");
        let secs = prometheus::exponential_buckets(0.0005, 2.0, 16).expect("static buckets");
        let hist = |o: HistogramOpts| Histogram::with_opts(o).expect("static metric");
        Self {
            batch_size: hist(
                opts("ragd_batch_size", "Sequences per model forward batch").buckets(pow2.clone()),
            ),
            batch_tokens: hist(
                opts("ragd_batch_tokens", "Tokens per model forward batch")
                    .buckets(prometheus::exponential_buckets(16.0, 2.0, 12).expect("static buckets")),
            ),
            queue_depth: IntGauge::with_opts(
                Opts::new("ragd_queue_depth", "Requests waiting for a model").const_label("model", model),
            )
            .expect("static metric"),
            queue_seconds: hist(
                opts("ragd_queue_wait_seconds", "Time a request waited for its batch").buckets(secs.clone()),
            ),
            forward_seconds: hist(opts("ragd_forward_seconds", "Model forward time per batch").buckets(secs)),
            queue: QueueMetrics::new(model),
        }
    }

    /// Every collector, for registration.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.batch_size.clone()),
            Box::new(self.batch_tokens.clone()),
            Box::new(self.queue_depth.clone()),
            Box::new(self.queue_seconds.clone()),
            Box::new(self.forward_seconds.clone()),
            Box::new(self.queue.capacity.clone()),
            Box::new(self.queue.rejections.clone()),
        ]
    }
}

/// Admission metrics of one model's queue, the same names for batch workers
/// and generation engines (so one alert covers every model): its capacity,
/// and the requests it refused, by reason (`full`: the whole queue;
/// `tenant_share`: the tenant's share of it).
#[derive(Clone)]
pub struct QueueMetrics {
    /// Most requests that may wait (`queue_capacity`).
    pub capacity: IntGauge,
    pub rejections: IntCounterVec,
}

impl QueueMetrics {
    /// Unregistered metrics labelled with the model id; both reasons start
    /// at 0, so a rate over them exists before the first refusal.
    pub fn new(model: &str) -> Self {
        let capacity = IntGauge::with_opts(
            Opts::new(
                "ragd_queue_capacity",
                "Most requests that may wait for a model; past it they are refused (429)",
            )
            .const_label("model", model),
        )
        .expect("static metric");
        let rejections = IntCounterVec::new(
            Opts::new(
                "ragd_queue_rejections_total",
                "Requests refused (429) because the model's queue (reason full) or the tenant's share of it (reason tenant_share) was full",
            )
            .const_label("model", model),
            &["reason"],
        )
        .expect("static metric");
        for reason in ["full", "tenant_share"] {
            rejections.with_label_values(&[reason]);
        }
        Self { capacity, rejections }
    }

    /// Counts a refusal and returns the engine's error for it.
    pub(crate) fn refused(&self, why: Refused, model: &str) -> EngineError {
        let reason = match why {
            Refused::Full { .. } => "full",
            Refused::TenantShare { .. } => "tenant_share",
        };
        self.rejections.with_label_values(&[reason]).inc();
        why.overloaded(model)
    }
}
