//! ragd-service: what a request does, without HTTP.
//!
//! The server (`ragd-server`) parses a request, checks its key and calls
//! in here; the command line (`ragd-cli`) calls in here for offline work.
//! Nothing here knows axum, tower or clap: inputs are plain values, errors
//! are [`ServiceError`] (mapped to HTTP in the server's one error table).
//!
//! - [`models`]: loading the models ([`ModelsConfig`]) and the handles the
//!   rest uses ([`ModelHandle`], [`GeneratorHandle`]).
//! - [`embedding`]: text to vectors through the embedder's batch worker.
//! - [`collections`]: each tenant's collections: upsert and retrieval.
//! - [`guard`]: the injection guard on inputs and retrieved chunks.
//! - [`rag`]: the RAG request and the prompt built from retrieved chunks.
//! - [`rerank`]: (query, document) pairs scored by the cross-encoder.
//! - [`generation`]: sampling settings, submitting choices, decoding them.
//! - [`cache`]: the exact and the semantic response caches.
//! - [`chat`]: the one chat pipeline that orders these stages.
//!
//! Model and index code is synchronous; the async functions here only wait
//! on batch workers and the blocking pool.

pub mod cache;
pub mod chat;
pub mod collections;
pub mod config;
pub mod embedding;
pub mod error;
pub mod generation;
pub mod guard;
pub mod guard_combine;
pub mod guard_policy;
pub mod local;
pub mod metrics;
pub mod models;
pub mod rag;
pub mod rerank;
pub mod resilience;
pub mod tenant;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod timing;
pub mod tokenize;
pub mod tool_format;
pub mod tools;
pub mod usage;

pub use config::{CollectionLimits, GuardConfig, ModelsConfig, RequestLimits};
pub use error::ServiceError;
pub use models::{GeneratorHandle, ModelHandle, Models, RerankerHandle};
pub use tenant::Tenant;
pub use usage::Usage;
