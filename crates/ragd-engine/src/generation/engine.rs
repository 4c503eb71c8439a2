//! The generation engine: a model thread running continuous batching
//! (iteration-level scheduling) over a paged KV cache, and the handle the
//! HTTP layer submits to.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use ragd_core::{Generator, KvLayout, ModelError, StepOutput};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::request::{FinishReason, GenerationEvent, GenerationLimits, GenerationRequest, Usage};
use super::scheduler::{Scheduler, SeqId, Sequence, StepPlan};
use super::GenerationMetrics;
use crate::fair::{Admission, Permit, TenantKey};
use crate::kv_blocks::BlockPool;
use crate::metrics::QueueMetrics;
use crate::sampling::{Sampled, Sampler};
use crate::{EngineError, InvalidRequest};

/// A request on its way to the model thread.
struct Submission {
    req: GenerationRequest,
    /// `req.max_tokens`, or up to the end of the context.
    max_tokens: usize,
    tenant: Option<TenantKey>,
    /// Its waiting slot, held until it is first admitted.
    permit: Permit,
    tx: UnboundedSender<GenerationEvent>,
    /// Shared with the stream: prompt tokens found in the prefix cache.
    cached_tokens: Arc<AtomicUsize>,
    submitted: Instant,
    span: tracing::Span,
}

/// What the engine keeps per sequence besides its tokens and blocks.
struct Live {
    tx: UnboundedSender<GenerationEvent>,
    /// Set at its first admission; the stream reads it.
    cached_tokens: Arc<AtomicUsize>,
    /// The waiting slot of a request not yet started (dropped at its first
    /// admission, or with the request).
    permit: Option<Permit>,
    sampler: Sampler,
    constraint: Option<crate::Constraint>,
    max_tokens: usize,
    stop_tokens: Vec<u32>,
    submitted: Instant,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
    /// The request's `generate` span (see [`generate_span`]).
    span: tracing::Span,
    /// Its current phase, a child of `span`: `queue`, then `prefill` from
    /// the first admission, then `decode` from the first token.
    phase: tracing::Span,
}

struct Shared {
    tx: Sender<Submission>,
    model_id: String,
    vocab_size: usize,
    context_len: usize,
    /// Most positions one sequence may reach: the context, or the whole KV
    /// cache when that is smaller.
    max_context: usize,
    kv_layout: KvLayout,
    limits: GenerationLimits,
    /// Waiting slots of fresh requests submitted and not yet started.
    admission: Arc<Admission>,
    queue_metrics: QueueMetrics,
}

/// Handle to a generation model thread. Cloning is cheap; the thread stops
/// once every handle is dropped and the work in hand is done.
#[derive(Clone)]
pub struct GenerationEngine {
    shared: Arc<Shared>,
}

impl GenerationEngine {
    /// Starts the model thread.
    ///
    /// # Panics
    /// If the OS refuses to start a thread.
    pub fn spawn(model: Box<dyn Generator>, limits: GenerationLimits, metrics: GenerationMetrics) -> Self {
        let (tx, rx) = channel();
        let kv_layout = model.kv_layout();
        let context_len = model.context_len();
        let cache_tokens = kv_layout.num_blocks * kv_layout.block_size;
        if cache_tokens < context_len {
            tracing::info!(
                model = %model.info().id,
                context_len,
                cache_tokens,
                "the KV cache is smaller than the context: prompt plus max_tokens is held to the cache"
            );
        }
        let shared = Shared {
            tx,
            model_id: model.info().id.clone(),
            vocab_size: model.vocab_size(),
            context_len,
            max_context: context_len.min(cache_tokens),
            kv_layout,
            limits,
            admission: Admission::new(limits.queue_capacity, limits.per_tenant_capacity()),
            queue_metrics: metrics.queue.clone(),
        };
        let pool = BlockPool::new(kv_layout.num_blocks, kv_layout.block_size.max(1));
        metrics.kv_blocks_capacity.set(kv_layout.num_blocks as i64);
        metrics.queue.capacity.set(limits.queue_capacity as i64);
        let worker = Worker {
            sched: Scheduler::new(pool, limits.max_batch_tokens, limits.max_running)
                .with_prefix_cache(limits.prefix_cache),
            context_len: shared.context_len,
            model,
            metrics,
        };
        std::thread::Builder::new()
            .name(format!("ragd-gen-{}", shared.model_id))
            .spawn(move || worker.run(rx))
            .expect("cannot start the generation thread");
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Queues a request without a tenant: it waits in the anonymous lane,
    /// held to `queue_capacity` only (see [`submit_as`](Self::submit_as)).
    pub fn submit(&self, req: GenerationRequest) -> Result<GenerationStream, EngineError> {
        self.enqueue(None, req)
    }

    /// Queues `tenant`'s request; its tokens come on the returned stream.
    /// Dropping the stream cancels the request. Refused with `Overloaded`
    /// when the queue is full or `tenant` already has
    /// `per_tenant_queue_capacity` requests waiting to start. Waiting
    /// requests start round-robin across tenants, in order within one.
    pub fn submit_as(
        &self,
        tenant: &TenantKey,
        req: GenerationRequest,
    ) -> Result<GenerationStream, EngineError> {
        self.enqueue(Some(tenant), req)
    }

    fn enqueue(
        &self,
        tenant: Option<&TenantKey>,
        req: GenerationRequest,
    ) -> Result<GenerationStream, EngineError> {
        let s = &self.shared;
        let max_tokens = self.validate(&req)?;
        let permit = s
            .admission
            .try_acquire(tenant)
            .map_err(|r| s.queue_metrics.refused(r, &s.model_id))?;
        let (tx, rx) = unbounded_channel();
        let cached_tokens = Arc::new(AtomicUsize::new(0));
        let req_prompt_len = req.prompt.len();
        let sub = Submission {
            req,
            max_tokens,
            tenant: tenant.cloned(),
            permit,
            tx,
            cached_tokens: cached_tokens.clone(),
            submitted: Instant::now(),
            span: generate_span(&s.model_id, req_prompt_len, max_tokens),
        };
        if s.tx.send(sub).is_err() {
            return Err(EngineError::Stopped(s.model_id.clone()));
        }
        Ok(GenerationStream { rx, cached_tokens })
    }

    /// The one check of a request's prompt and `max_tokens` (the HTTP layer
    /// and the model do not repeat it): the tokens it may generate.
    fn validate(&self, req: &GenerationRequest) -> Result<usize, InvalidRequest> {
        let s = &self.shared;
        InvalidRequest::check(&req.prompt, req.max_tokens, s.max_context, s.vocab_size)
    }

    /// The model's context length.
    pub fn context_len(&self) -> usize {
        self.shared.context_len
    }

    /// Most positions a sequence may reach (prompt + generated): the
    /// context, or the whole KV cache when that is smaller.
    pub fn max_context(&self) -> usize {
        self.shared.max_context
    }

    pub fn kv_layout(&self) -> KvLayout {
        self.shared.kv_layout
    }

    pub fn model_id(&self) -> &str {
        &self.shared.model_id
    }

    pub fn limits(&self) -> GenerationLimits {
        self.shared.limits
    }
}

/// The events of one request: tokens, then `Finished` or `Failed`, then
/// `None`. Dropping it cancels the request and frees its KV blocks.
pub struct GenerationStream {
    rx: UnboundedReceiver<GenerationEvent>,
    cached_tokens: Arc<AtomicUsize>,
}

impl GenerationStream {
    /// Prompt tokens the request found in the prefix cache (not
    /// prefilled): known from its admission, so before its first token; 0
    /// before, or with the cache off.
    pub fn cached_tokens(&self) -> usize {
        self.cached_tokens.load(Ordering::Relaxed)
    }

    /// The next event; `None` after the last one (or if the engine died).
    pub async fn next(&mut self) -> Option<GenerationEvent> {
        self.rx.recv().await
    }
}

/// The model thread's state.
struct Worker {
    model: Box<dyn Generator>,
    sched: Scheduler<Live>,
    context_len: usize,
    metrics: GenerationMetrics,
}

impl Worker {
    fn run(mut self, rx: Receiver<Submission>) {
        let mut open = true;
        loop {
            if !self.sched.has_work() {
                self.update_gauges();
                if !open {
                    return;
                }
                match rx.recv() {
                    Ok(sub) => self.add(sub),
                    Err(_) => return,
                }
            }
            while open {
                match rx.try_recv() {
                    Ok(sub) => self.add(sub),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            self.drop_cancelled();
            if self.sched.has_work() {
                self.step();
            }
        }
    }

    fn add(&mut self, sub: Submission) {
        let req = sub.req;
        let live = Live {
            tx: sub.tx,
            cached_tokens: sub.cached_tokens,
            permit: Some(sub.permit),
            sampler: Sampler::new(req.sampling),
            constraint: req.constraint,
            max_tokens: sub.max_tokens,
            stop_tokens: if req.ignore_eos {
                Vec::new()
            } else {
                req.stop_tokens
            },
            submitted: sub.submitted,
            first_token: None,
            last_token: None,
            phase: tracing::info_span!(parent: &sub.span, "queue"),
            span: sub.span,
        };
        self.sched
            .add_with_priority(sub.tenant, req.priority, req.prompt, live);
    }

    /// Removes the sequences whose stream was dropped, freeing their blocks.
    fn drop_cancelled(&mut self) {
        for seq in self.sched.remove_where(|s| s.payload.tx.is_closed()) {
            let usage = usage_of(&seq);
            let ev = GenerationEvent::Finished {
                reason: FinishReason::Cancelled,
                usage,
            };
            record_end(&seq.payload.span, &ev);
            tracing::debug!(
                parent: &seq.payload.span,
                reason = FinishReason::Cancelled.as_str(),
                generated = seq.generated().len(),
                "generation cancelled"
            );
        }
    }

    fn update_gauges(&self) {
        let m = &self.metrics;
        m.running.set(self.sched.running_len() as i64);
        m.waiting.set(self.sched.waiting_len() as i64);
        let pool = self.sched.pool();
        m.kv_blocks_used.set(pool.used_blocks() as i64);
        m.prefix_cache_blocks.set(pool.cached_blocks() as i64);
    }

    fn step(&mut self) {
        let plan = self.sched.schedule();
        for &id in &plan.admitted {
            // Started: its waiting slot goes to the next request.
            if let Some(seq) = self.sched.get_mut(id) {
                let cached = seq.cached_tokens();
                let live = &mut seq.payload;
                live.permit = None;
                live.cached_tokens.store(cached, Ordering::Relaxed);
                live.phase =
                    tracing::info_span!(parent: &live.span, "prefill", cached_tokens = cached as i64);
            }
        }
        let m = &self.metrics;
        m.preemptions.inc_by(plan.preempted.len() as u64);
        m.prefix_cache_queried_tokens
            .inc_by(plan.cache_queried_tokens as u64);
        m.prefix_cache_hit_tokens.inc_by(plan.cache_hit_tokens as u64);
        m.prefix_cache_evictions.inc_by(plan.cache_evictions);
        if !plan.preempted.is_empty() {
            tracing::debug!(
                preempted = plan.preempted.len(),
                "KV cache full: preempted sequences"
            );
        }
        if plan.is_empty() {
            if !plan.preempted.is_empty() {
                // Evicted to make room; the next round admits again.
                self.update_gauges();
                return;
            }
            // Unreachable while requests are validated against the cache
            // (the oldest sequence always fits); never spin on a stall.
            tracing::error!("generation scheduler stalled; failing the waiting requests");
            for seq in self.sched.remove_where(|_| true) {
                let ev = GenerationEvent::Failed("the scheduler could not place this request".into());
                record_end(&seq.payload.span, &ev);
                let _ = seq.payload.tx.send(ev);
            }
            self.update_gauges();
            return;
        }
        self.update_gauges();
        self.metrics.batch_size.observe(plan.chunks.len() as f64);
        self.metrics.step_tokens.observe(plan.num_tokens() as f64);
        // Sequences that only take the argmax (greedy, unconstrained): a
        // device backend then copies one id back instead of a whole row.
        let greedy: Vec<bool> = plan
            .chunks
            .iter()
            .filter(|c| c.want_logits)
            .map(|c| {
                self.sched
                    .get_mut(c.id)
                    .is_some_and(|s| s.payload.constraint.is_none() && s.payload.sampler.is_plain_greedy())
            })
            .collect();
        let result = {
            let chunks = self.sched.chunks(&plan);
            let model = &mut self.model;
            // A panicking model must not take the thread (and every later
            // request) down with it: turn it into an error for this step.
            catch_unwind(AssertUnwindSafe(|| model.step_greedy(&chunks, &greedy)))
                .unwrap_or_else(|_| Err(ModelError::Inference("the model panicked".into())))
        };
        match result {
            Ok(rows) if rows.len() == plan.num_logits() => {
                self.sched.commit(&plan);
                self.sample(&plan, rows);
            }
            Ok(rows) => {
                let msg = format!(
                    "the model returned {} rows of logits for {} sequences",
                    rows.len(),
                    plan.num_logits()
                );
                self.fail(&plan, &msg);
            }
            Err(e) => self.fail(&plan, &e.to_string()),
        }
        self.update_gauges();
    }

    /// Fails every sequence of a failed step.
    fn fail(&mut self, plan: &StepPlan, msg: &str) {
        tracing::error!(error = %msg, sequences = plan.chunks.len(), "generation step failed");
        for c in &plan.chunks {
            if let Some(seq) = self.sched.remove(c.id) {
                let ev = GenerationEvent::Failed(msg.to_string());
                record_end(&seq.payload.span, &ev);
                let _ = seq.payload.tx.send(ev);
                self.metrics
                    .e2e_request_latency
                    .observe(seq.payload.submitted.elapsed().as_secs_f64());
            }
        }
    }

    /// Samples a token for each chunk that wanted logits and sends events.
    fn sample(&mut self, plan: &StepPlan, rows: Vec<StepOutput>) {
        let now = Instant::now();
        let mut ended: Vec<(SeqId, GenerationEvent)> = Vec::new();
        let chunks = plan.chunks.iter().filter(|c| c.want_logits);
        for (c, out) in chunks.zip(rows) {
            let Some(seq) = self.sched.get_mut(c.id) else {
                continue;
            };
            let (prompt, generated, live) = seq.parts_mut();
            let prompt_len = prompt.len();
            let sampled = match out {
                // The model picked it (asked for plain greedy sequences only).
                StepOutput::Token(token) => Sampled {
                    token,
                    logprobs: None,
                },
                StepOutput::Logits(mut row) => {
                    if let Some(Err(e)) = live.constraint.as_ref().map(|c| c.mask(&mut row)) {
                        ended.push((
                            c.id,
                            GenerationEvent::Failed(format!("constrained decoding failed: {e}")),
                        ));
                        continue;
                    }
                    let sampler = &mut live.sampler;
                    let Ok(sampled) =
                        catch_unwind(AssertUnwindSafe(|| sampler.sample(&mut row, prompt, generated)))
                    else {
                        ended.push((c.id, GenerationEvent::Failed("the sampler panicked".into())));
                        continue;
                    };
                    sampled
                }
            };
            let m = &self.metrics;
            m.generation_tokens.inc();
            match live.last_token {
                None => {
                    live.first_token = Some(now);
                    live.phase = tracing::info_span!(parent: &live.span, "decode");
                    m.prompt_tokens.inc_by(prompt_len as u64);
                    m.time_to_first_token
                        .observe(now.duration_since(live.submitted).as_secs_f64());
                }
                Some(last) => m
                    .inter_token_latency
                    .observe(now.duration_since(last).as_secs_f64()),
            }
            live.last_token = Some(now);
            let token = sampled.token;
            let stop = live.stop_tokens.contains(&token);
            let complete = match (&live.constraint, stop) {
                (Some(constraint), false) => match constraint.accept(token) {
                    Ok(done) => done,
                    Err(e) => {
                        ended.push((
                            c.id,
                            GenerationEvent::Failed(format!("constrained decoding failed: {e}")),
                        ));
                        continue;
                    }
                },
                _ => false,
            };
            let max_tokens = live.max_tokens;
            if !stop {
                let sent = live.tx.send(GenerationEvent::Token {
                    id: token,
                    logprobs: sampled.logprobs,
                });
                if sent.is_err() {
                    // Cancelled: nobody to tell.
                    ended.push((
                        c.id,
                        GenerationEvent::Finished {
                            reason: FinishReason::Cancelled,
                            usage: Usage::default(),
                        },
                    ));
                    continue;
                }
            }
            seq.push_token(token);
            let usage = usage_of(seq);
            let reason = if stop || complete {
                Some(FinishReason::Stop)
            } else if usage.completion_tokens >= max_tokens || seq.tokens().len() >= self.context_len {
                Some(FinishReason::Length)
            } else {
                None
            };
            if let Some(reason) = reason {
                ended.push((c.id, GenerationEvent::Finished { reason, usage }));
            }
        }
        // Free the blocks first, so a caller that sees the end sees them
        // free too.
        let ended: Vec<_> = ended
            .into_iter()
            .filter_map(|(id, ev)| self.sched.remove(id).map(|seq| (seq, ev)))
            .collect();
        self.update_gauges();
        for (seq, ev) in ended {
            let live = seq.payload;
            let elapsed = live.submitted.elapsed();
            self.metrics.e2e_request_latency.observe(elapsed.as_secs_f64());
            record_end(&live.span, &ev);
            if let GenerationEvent::Finished { reason, usage } = &ev {
                tracing::debug!(
                    parent: &live.span,
                    reason = reason.as_str(),
                    prompt_tokens = usage.prompt_tokens,
                    completion_tokens = usage.completion_tokens,
                    ttft_ms = live.first_token.map(|t| t.duration_since(live.submitted).as_secs_f64() * 1e3),
                    total_ms = elapsed.as_secs_f64() * 1e3,
                    "generation finished"
                );
            }
            let _ = live.tx.send(ev);
        }
    }
}

/// The span of one submitted request (one choice): from submission to its
/// end, so queue wait, prefill and decode (its `queue`, `prefill` and
/// `decode` children). A child of the submitter's current span; attributes
/// follow OpenTelemetry's GenAI conventions. Counts are recorded as `i64`:
/// tracing-opentelemetry exports unsigned fields as strings.
fn generate_span(model: &str, prompt_tokens: usize, max_tokens: usize) -> tracing::Span {
    tracing::info_span!(
        "generate",
        gen_ai.operation.name = "generate",
        gen_ai.request.model = %model,
        gen_ai.request.max_tokens = max_tokens as i64,
        gen_ai.usage.input_tokens = prompt_tokens as i64,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        gen_ai.response.finish_reasons = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    )
}

/// A sequence's token counts so far.
fn usage_of(seq: &Sequence<Live>) -> Usage {
    Usage {
        prompt_tokens: seq.prompt().len(),
        completion_tokens: seq.generated().len(),
        cached_tokens: seq.cached_tokens(),
    }
}

/// Records how a request ended on its `generate` span.
fn record_end(span: &tracing::Span, ev: &GenerationEvent) {
    match ev {
        GenerationEvent::Finished { reason, usage } => {
            span.record("gen_ai.usage.output_tokens", usage.completion_tokens as i64);
            span.record("gen_ai.response.finish_reasons", reason.as_str());
        }
        GenerationEvent::Failed(msg) => {
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_description", msg.as_str());
        }
        GenerationEvent::Token { .. } => {}
    }
}
