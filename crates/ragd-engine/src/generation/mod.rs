//! Continuous batching for generation (iteration-level scheduling, as in
//! vLLM and TGI).
//!
//! [`GenerationEngine`] owns a [`Generator`](ragd_core::Generator) on its own
//! OS thread. Every step it drops cancelled requests, lets the
//! [`Scheduler`] pick the chunks to run (decodes first, then chunked
//! prefill, with KV blocks reserved and preemption when the cache is full),
//! runs the model once over all of them, samples a token per sequence with
//! its own sampler and sends the events. Requests join and leave the batch
//! between any two steps.

mod engine;
mod metrics;
mod request;
pub mod scheduler;

pub use engine::{GenerationEngine, GenerationStream};
pub use metrics::GenerationMetrics;
pub use request::{FinishReason, GenerationEvent, GenerationLimits, GenerationRequest, Usage};
pub use scheduler::{PlannedChunk, Scheduler, SeqId, Sequence, StepPlan};
