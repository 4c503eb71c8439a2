//! ragd-core: the plain data types and traits every other ragd crate shares.
//!
//! Nothing here depends on candle, tokio or axum, so the engine can be tested
//! with the fake models in [`testing`] in milliseconds.

pub mod batch;
pub mod error;
pub mod framing;
pub mod generator;
pub mod model;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tokenizer;

pub use batch::TokenBatch;
pub use error::{ModelError, Result};
pub use framing::{Framing, Overflow};
pub use generator::{argmax, Generator, KvLayout, SeqChunk, StepOutput};
pub use model::{Classifier, Embedder, ModelInfo, ModelKind};
pub use tokenizer::TextTokenizer;
