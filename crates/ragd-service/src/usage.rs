//! Tokens a request used: OpenAI's `usage` object, the one shape for every
//! endpoint (embeddings and searches have no completion tokens).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<usize>,
    pub total_tokens: usize,
}

impl Usage {
    /// Input tokens only (embeddings, searches, document upserts).
    pub fn input(tokens: usize) -> Self {
        Self {
            prompt_tokens: tokens,
            completion_tokens: None,
            total_tokens: tokens,
        }
    }

    /// A completion: prompt and generated tokens.
    pub fn completion(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens: Some(completion_tokens),
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}
