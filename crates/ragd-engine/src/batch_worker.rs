//! Dynamic batching for embedders and classifiers.
//!
//! Requests queue up to a bounded number of waiting slots, of which one
//! tenant may hold at most its share. A dedicated OS thread owns the model:
//! it waits for one request, takes in every request already sent, and
//! fills one batch from them, up to a token and sequence budget,
//! round-robin across tenants (in order within a tenant). Requests whose
//! caller has gone (the HTTP client disconnected and the future was
//! dropped) are dropped before they cost a forward pass.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use ragd_core::{Classifier, Embedder, ModelError, TokenBatch};
use tokio::sync::oneshot;

use crate::fair::{Admission, FairQueue, Permit, TenantKey};
use crate::{EngineError, WorkerMetrics};

/// A model the worker can run: framed token sequences in, one vector each out.
pub trait BatchModel: Send + 'static {
    fn run(&mut self, batch: &TokenBatch) -> ragd_core::Result<Vec<Vec<f32>>>;
}

impl BatchModel for Box<dyn Embedder> {
    fn run(&mut self, batch: &TokenBatch) -> ragd_core::Result<Vec<Vec<f32>>> {
        self.embed(batch)
    }
}

impl BatchModel for Box<dyn Classifier> {
    fn run(&mut self, batch: &TokenBatch) -> ragd_core::Result<Vec<Vec<f32>>> {
        self.classify(batch)
    }
}

/// Bounds of the queue and of one batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Requests that may wait; one more is refused with `Overloaded`.
    pub queue_capacity: usize,
    /// Requests one tenant may have waiting; one more from that tenant is
    /// refused with `Overloaded` (`tenant_share`) while other tenants are
    /// still admitted. `None`: a quarter of `queue_capacity`, at least 1.
    /// Requests without a tenant are held to `queue_capacity` only.
    pub per_tenant_queue_capacity: Option<usize>,
    /// Most tokens (sum of sequence lengths) in one batch. A single request
    /// over the budget still runs, alone.
    pub max_batch_tokens: usize,
    /// Most sequences in one batch.
    pub max_batch_seqs: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            per_tenant_queue_capacity: None,
            max_batch_tokens: 16_384,
            max_batch_seqs: 256,
        }
    }
}

impl BatchLimits {
    /// The per-tenant cap in effect (see `per_tenant_queue_capacity`).
    pub fn per_tenant_capacity(&self) -> usize {
        self.per_tenant_queue_capacity
            .unwrap_or_else(|| crate::fair::default_share(self.queue_capacity))
    }
}

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, EngineError>>;

struct Job {
    seqs: Vec<Vec<u32>>,
    tokens: usize,
    tenant: Option<TenantKey>,
    /// Its waiting slot, given back when it goes into a batch.
    permit: Option<Permit>,
    reply: Reply,
    span: tracing::Span,
    enqueued: Instant,
}

/// Handle to a model thread. Cloning is cheap; the thread stops when every
/// handle is dropped and the queue is drained.
#[derive(Clone)]
pub struct BatchWorker {
    name: String,
    tx: Sender<Job>,
    admission: Arc<Admission>,
    /// The tenant [`run`](Self::run) queues for (see
    /// [`with_tenant`](Self::with_tenant)).
    tenant: Option<TenantKey>,
    limits: BatchLimits,
    metrics: WorkerMetrics,
}

impl BatchWorker {
    /// Starts the model thread.
    pub fn spawn<M: BatchModel>(
        name: &str,
        model: M,
        limits: BatchLimits,
        metrics: WorkerMetrics,
    ) -> std::io::Result<(Self, JoinHandle<()>)> {
        let (tx, rx) = channel();
        metrics.queue.capacity.set(limits.queue_capacity as i64);
        let thread_metrics = metrics.clone();
        let handle = std::thread::Builder::new()
            .name(format!("ragd-{name}"))
            .spawn(move || worker_loop(model, rx, limits, thread_metrics))?;
        let worker = Self {
            name: name.to_string(),
            tx,
            admission: Admission::new(limits.queue_capacity, limits.per_tenant_capacity()),
            tenant: None,
            limits,
            metrics,
        };
        Ok((worker, handle))
    }

    /// This handle with [`run`](Self::run) queueing for `tenant` (the
    /// same model thread and queue).
    pub fn with_tenant(&self, tenant: TenantKey) -> Self {
        Self {
            tenant: Some(tenant),
            ..self.clone()
        }
    }

    /// The tenant [`run`](Self::run) queues for (`None`: the anonymous
    /// lane, held to `queue_capacity` only).
    pub fn tenant(&self) -> Option<&TenantKey> {
        self.tenant.as_ref()
    }

    /// Runs `seqs` (already framed) in some batch and returns one vector per
    /// sequence, for this handle's tenant (see [`run_as`](Self::run_as)).
    pub async fn run(&self, seqs: Vec<Vec<u32>>) -> Result<Vec<Vec<f32>>, EngineError> {
        self.enqueue(self.tenant.clone(), seqs).await
    }

    /// Runs `tenant`'s `seqs` (already framed) in some batch and returns one
    /// vector per sequence. Refused with `Overloaded` when the queue is full
    /// or `tenant` already has `per_tenant_queue_capacity` requests waiting.
    /// Dropping the future before it completes withdraws the request: the
    /// worker skips it if it has not started yet.
    pub async fn run_as(
        &self,
        tenant: &TenantKey,
        seqs: Vec<Vec<u32>>,
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        self.enqueue(Some(tenant.clone()), seqs).await
    }

    async fn enqueue(
        &self,
        tenant: Option<TenantKey>,
        seqs: Vec<Vec<u32>>,
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let permit = self
            .admission
            .try_acquire(tenant.as_ref())
            .map_err(|r| self.metrics.queue.refused(r, &self.name))?;
        let (reply, rx) = oneshot::channel();
        let job = Job {
            tokens: seqs.iter().map(Vec::len).sum(),
            seqs,
            tenant,
            permit: Some(permit),
            reply,
            span: tracing::Span::current(),
            enqueued: Instant::now(),
        };
        self.metrics.queue_depth.inc();
        if self.tx.send(job).is_err() {
            self.metrics.queue_depth.dec();
            return Err(EngineError::Stopped(self.name.clone()));
        }
        rx.await.map_err(|_| EngineError::Stopped(self.name.clone()))?
    }

    /// The queue's bounds.
    pub fn limits(&self) -> BatchLimits {
        self.limits
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Jobs gathered for the next forward pass.
#[derive(Default)]
struct PendingBatch {
    jobs: Vec<Job>,
    tokens: usize,
    seqs: usize,
}

impl PendingBatch {
    fn fits(&self, job: &Job, limits: &BatchLimits) -> bool {
        self.tokens + job.tokens <= limits.max_batch_tokens
            && self.seqs + job.seqs.len() <= limits.max_batch_seqs
    }

    fn admit(&mut self, mut job: Job) {
        job.permit = None;
        self.tokens += job.tokens;
        self.seqs += job.seqs.len();
        self.jobs.push(job);
    }
}

fn worker_loop<M: BatchModel>(mut model: M, rx: Receiver<Job>, limits: BatchLimits, metrics: WorkerMetrics) {
    let mut waiting: FairQueue<Job> = FairQueue::default();
    loop {
        if waiting.is_empty() {
            match rx.recv() {
                Ok(job) => waiting.push(job.tenant.clone(), job),
                Err(_) => return,
            }
        }
        // Everything sent so far joins the line, so that the batch is drawn
        // fairly from all of it.
        while let Ok(job) = rx.try_recv() {
            waiting.push(job.tenant.clone(), job);
        }
        // Withdrawn requests leave (and free their slots) before they cost
        // a forward pass.
        let gone = waiting.extract_where(|job| job.reply.is_closed());
        metrics.queue_depth.sub(gone.len() as i64);
        drop(gone);
        let mut batch = PendingBatch::default();
        while let Some(job) = waiting.front() {
            if !batch.jobs.is_empty() && !batch.fits(job, &limits) {
                break;
            }
            let job = waiting.pop_front().expect("front exists");
            metrics.queue_depth.dec();
            batch.admit(job);
        }
        let jobs = batch.jobs;
        if !jobs.is_empty() {
            run_batch(&mut model, jobs, &metrics);
        }
    }
}

fn run_batch<M: BatchModel>(model: &mut M, jobs: Vec<Job>, metrics: &WorkerMetrics) {
    let started = Instant::now();
    let mut batch = TokenBatch::new();
    for job in &jobs {
        let waited = started.duration_since(job.enqueued);
        metrics.queue_seconds.observe(waited.as_secs_f64());
        // The request's own log line for its queue stage.
        tracing::debug!(parent: &job.span, queue_ms = waited.as_secs_f64() * 1e3, batch_requests = jobs.len(), "dequeued");
        for s in &job.seqs {
            batch.push(s);
        }
    }
    metrics.batch_size.observe(batch.len() as f64);
    metrics.batch_tokens.observe(batch.num_tokens() as f64);
    let span = tracing::debug_span!(
        parent: &jobs[0].span,
        "forward",
        requests = jobs.len(),
        seqs = batch.len(),
        tokens = batch.num_tokens()
    );
    let result = span.in_scope(|| {
        // A panicking model must not take the thread (and every later
        // request) down with it: turn it into an error for this batch.
        catch_unwind(AssertUnwindSafe(|| model.run(&batch)))
            .unwrap_or_else(|_| Err(ModelError::Inference("the model panicked".into())))
    });
    metrics.forward_seconds.observe(started.elapsed().as_secs_f64());
    match result {
        Ok(mut vectors) if vectors.len() == batch.len() => {
            // Hand each job its slice, from the back so `split_off` is cheap.
            for job in jobs.into_iter().rev() {
                let mine = vectors.split_off(vectors.len() - job.seqs.len());
                let _ = job.reply.send(Ok(mine));
            }
        }
        Ok(vectors) => {
            let msg = format!(
                "model returned {} vectors for {} sequences",
                vectors.len(),
                batch.len()
            );
            for job in jobs {
                let _ = job.reply.send(Err(ModelError::Inference(msg.clone()).into()));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            tracing::error!(error = %msg, "batch failed");
            for job in jobs {
                let err = match &e {
                    ModelError::InvalidInput(m) => ModelError::InvalidInput(m.clone()),
                    _ => ModelError::Inference(msg.clone()),
                };
                let _ = job.reply.send(Err(err.into()));
            }
        }
    }
}
