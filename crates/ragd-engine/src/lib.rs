//! ragd-engine: scheduling for ragd's models.
//!
//! [`BatchWorker`] runs an embedder or classifier on its own OS thread and
//! packs concurrent requests into batches up to a token budget (dynamic
//! batching). It depends on `ragd-core`'s traits only, so it is tested with
//! fake models.
//!
//! [`GenerationEngine`] runs the generator on its own thread with
//! continuous batching: each step mixes decodes and prefill chunks within a
//! token budget, preempting sequences when KV blocks run out; the scheduler
//! (`generation/scheduler`) is pure and tested with a fake generator.
//! Requests are validated once, in [`GenerationEngine::submit`]
//! ([`InvalidRequest`] says which parameter is wrong).
//!
//! [`kv_blocks`] hands out the paged KV cache's blocks to sequences (RAII)
//! and keeps full ones as a tenant-salted prefix cache (hash chain,
//! reference counts, LRU eviction);
//! [`sampling`] turns logits into tokens (seeded, penalties, logprobs).
//!
//! Every queue is fair across tenants ([`TenantKey`]): one tenant may hold
//! at most its share of the waiting slots, and waiting requests are served
//! round-robin across tenants (by priority class first, when requests set
//! one: [`GenerationRequest::priority`]).

mod batch_worker;
mod constraint;
mod error;
mod fair;
pub mod generation;
pub mod kv_blocks;
mod metrics;
pub mod sampling;
pub mod text_stream;

pub use batch_worker::{BatchLimits, BatchModel, BatchWorker};
pub use constraint::{Constraint, TokenConstraint};
pub use error::{EngineError, InvalidRequest, Param};
pub use fair::TenantKey;
pub use generation::{
    FinishReason, GenerationEngine, GenerationEvent, GenerationLimits, GenerationMetrics, GenerationRequest,
    GenerationStream, Usage,
};
pub use kv_blocks::{BlockPool, BlockTable, OutOfBlocks};
pub use metrics::{QueueMetrics, WorkerMetrics};
