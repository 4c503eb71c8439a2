//! Tokens a request used: OpenAI's `usage` object, the one shape for every
//! endpoint (embeddings and searches have no completion tokens).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<usize>,
    pub total_tokens: usize,
    /// Completions only: how many prompt tokens came from the prefix cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// OpenAI's `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose KV came from the prefix cache (not prefilled).
    pub cached_tokens: usize,
}

impl Usage {
    /// Input tokens only (embeddings, searches, document upserts).
    pub fn input(tokens: usize) -> Self {
        Self {
            prompt_tokens: tokens,
            completion_tokens: None,
            total_tokens: tokens,
            prompt_tokens_details: None,
        }
    }

    /// A completion: prompt and generated tokens, and the prompt tokens
    /// found in the prefix cache.
    pub fn completion(prompt_tokens: usize, completion_tokens: usize, cached_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens: Some(completion_tokens),
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: Some(PromptTokensDetails { cached_tokens }),
        }
    }

    /// Prompt tokens found in the prefix cache (0 for inputs).
    pub fn cached_tokens(&self) -> usize {
        self.prompt_tokens_details.map_or(0, |d| d.cached_tokens)
    }
}
