//! The error type of the model layer. The server maps it to HTTP in one place.

/// What can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model file is missing, unreadable or not what was expected.
    #[error("cannot load model from {path}: {reason}")]
    Load { path: String, reason: String },
    /// The input cannot be processed (empty, too long, bad token id...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The tokenizer failed.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// The forward pass failed (a bug or a device error, never the user's fault).
    #[error("inference failed: {0}")]
    Inference(String),
}

impl ModelError {
    pub fn load(path: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        Self::Load {
            path: path.to_string(),
            reason: reason.to_string(),
        }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
