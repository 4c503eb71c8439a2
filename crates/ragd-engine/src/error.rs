//! The engine's error type.

use ragd_core::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The queue is full, or the tenant already holds its share of it
    /// (`tenant_share`, with `capacity` its share): the caller should back
    /// off (HTTP 429/503).
    #[error(
        "the {model} queue is full ({capacity} {}requests waiting); retry later",
        if *tenant_share { "of this tenant's " } else { "" }
    )]
    Overloaded {
        model: String,
        capacity: usize,
        tenant_share: bool,
    },
    /// The worker thread has stopped (shutdown or a crashed model).
    #[error("the {0} worker is not running")]
    Stopped(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The request can never be served as asked (empty prompt, longer than
    /// the context or the KV cache...): the caller's fault (HTTP 400).
    #[error("{0}")]
    InvalidRequest(String),
}
