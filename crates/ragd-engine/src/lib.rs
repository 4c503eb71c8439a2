//! ragd-engine: scheduling for ragd's models.
//!
//! [`BatchWorker`] runs an embedder or classifier on its own OS thread and
//! packs concurrent requests into batches up to a token budget (dynamic
//! batching). It depends on `ragd-core`'s traits only, so it is tested with
//! fake models.

mod batch_worker;
mod error;
mod metrics;

pub use batch_worker::{BatchLimits, BatchModel, BatchWorker};
pub use error::EngineError;
pub use metrics::WorkerMetrics;
