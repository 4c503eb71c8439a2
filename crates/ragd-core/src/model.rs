//! The traits the engine schedules over. Implementations are synchronous and
//! run on a dedicated thread; the engine owns the batching.

use crate::{Framing, Overflow, Result, TokenBatch};

/// What a loaded model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Embedder,
    Guard,
    Generator,
    /// A cross-encoder scoring (query, document) pairs.
    Reranker,
}

/// Static facts about a loaded model, for `/v1/models` and for validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The public id clients name in requests.
    pub id: String,
    pub kind: ModelKind,
    /// Special tokens and window: every sequence given to the model is a
    /// framed one, at most `framing.max_len` long.
    pub framing: Framing,
}

impl ModelInfo {
    /// A generator called `id` reaching `context_len` positions: prompts
    /// are not framed, and are truncated to the context.
    pub fn generator(id: &str, context_len: usize) -> Self {
        Self {
            id: id.to_string(),
            kind: ModelKind::Generator,
            framing: Framing {
                prefix: vec![],
                suffix: vec![],
                max_len: context_len,
                overflow: Overflow::Truncate,
            },
        }
    }
}

/// Turns token sequences into L2-normalised sentence vectors.
pub trait Embedder: Send {
    fn info(&self) -> &ModelInfo;
    /// Output dimension.
    fn dim(&self) -> usize;
    /// One vector per sequence, in order. Every sequence is at most
    /// `info().framing.max_len` long.
    fn embed(&mut self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>>;
}

/// A sequence classifier (the injection/jailbreak guard).
pub trait Classifier: Send {
    fn info(&self) -> &ModelInfo;
    /// Label names, in the order of the probabilities `classify` returns.
    fn labels(&self) -> &[String];
    /// Class probabilities (softmax) per sequence, in order. Every sequence
    /// is at most `info().framing.max_len` long.
    fn classify(&mut self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>>;
}
