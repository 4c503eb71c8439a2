//! Conversions from the errors of candle and tokenizers into [`ModelError`].

use ragd_core::ModelError;

/// Wraps a candle error raised during a forward pass.
pub fn inference(e: candle_core::Error) -> ModelError {
    ModelError::Inference(e.to_string())
}

/// Wraps a tokenizer error.
pub fn tokenizer(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}
