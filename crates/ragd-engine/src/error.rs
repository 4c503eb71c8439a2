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
    /// The request can never be served as asked: the caller's fault (HTTP
    /// 400). Checked at submit, before the request is queued.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
}

/// Why a generation request was refused at submit, with the numbers. Every
/// check on the prompt and `max_tokens` lives in the engine (the HTTP layer
/// and the model do not repeat them).
///
/// `max_context` is the most positions one sequence may reach (prompt and
/// generated tokens): the model's context length, or the KV cache's size
/// when that is smaller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("the prompt is empty: send at least one token")]
    EmptyPrompt,
    /// The prompt leaves no room for even one generated token.
    #[error(
        "the prompt has {prompt_tokens} tokens but the context is {max_context} tokens, which \
         must also hold at least one generated token: shorten the prompt to fewer than \
         {max_context} tokens"
    )]
    PromptTooLong {
        prompt_tokens: usize,
        max_context: usize,
    },
    #[error("`max_tokens` must be at least 1")]
    ZeroMaxTokens,
    /// The prompt fits, but not with `max_tokens` more after it.
    #[error(
        "max_tokens is {max_tokens} but the prompt has {prompt_tokens} tokens and the context is \
         {max_context}: ask for at most {} tokens, or leave max_tokens out to generate up to the \
         end of the context",
        max_context.saturating_sub(*prompt_tokens)
    )]
    MaxTokensPastContext {
        prompt_tokens: usize,
        max_tokens: usize,
        max_context: usize,
    },
    #[error("token id {token} is outside the vocabulary: ids must be below {vocab_size}")]
    TokenOutOfVocabulary { token: u32, vocab_size: usize },
}

/// The request field an [`InvalidRequest`] is about. The caller names it:
/// the prompt is `messages` in a chat request and `prompt` in a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Prompt,
    MaxTokens,
}

impl InvalidRequest {
    pub fn param(&self) -> Param {
        match self {
            Self::EmptyPrompt | Self::PromptTooLong { .. } | Self::TokenOutOfVocabulary { .. } => {
                Param::Prompt
            }
            Self::ZeroMaxTokens | Self::MaxTokensPastContext { .. } => Param::MaxTokens,
        }
    }

    /// Checks a request: `Ok` with the tokens it may generate (`max_tokens`,
    /// or up to the end of the context when `None`).
    pub(crate) fn check(
        prompt: &[u32],
        max_tokens: Option<usize>,
        max_context: usize,
        vocab_size: usize,
    ) -> Result<usize, Self> {
        Self::check_max_tokens(max_tokens)?;
        let prompt_tokens = prompt.len();
        if prompt_tokens == 0 {
            return Err(Self::EmptyPrompt);
        }
        if prompt_tokens >= max_context {
            return Err(Self::PromptTooLong {
                prompt_tokens,
                max_context,
            });
        }
        let room = max_context - prompt_tokens;
        let max_tokens = match max_tokens {
            Some(m) if m > room => {
                return Err(Self::MaxTokensPastContext {
                    prompt_tokens,
                    max_tokens: m,
                    max_context,
                })
            }
            Some(m) => m,
            None => room,
        };
        if let Some(&token) = prompt.iter().find(|&&t| t as usize >= vocab_size) {
            return Err(Self::TokenOutOfVocabulary { token, vocab_size });
        }
        Ok(max_tokens)
    }

    /// The check on `max_tokens` alone, which needs no prompt: the HTTP layer
    /// runs it before building one (retrieval, the guard...), and
    /// [`GenerationEngine::submit`](crate::GenerationEngine::submit) again.
    pub fn check_max_tokens(max_tokens: Option<usize>) -> Result<(), Self> {
        match max_tokens {
            Some(0) => Err(Self::ZeroMaxTokens),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(prompt_tokens: usize, max_tokens: Option<usize>) -> Result<usize, InvalidRequest> {
        InvalidRequest::check(&vec![1; prompt_tokens], max_tokens, 64, 100)
    }

    #[test]
    fn each_kind_has_its_numbers_and_param() {
        let cases = [
            (check(0, Some(5)), InvalidRequest::EmptyPrompt, Param::Prompt),
            (
                check(64, None),
                InvalidRequest::PromptTooLong {
                    prompt_tokens: 64,
                    max_context: 64,
                },
                Param::Prompt,
            ),
            (check(4, Some(0)), InvalidRequest::ZeroMaxTokens, Param::MaxTokens),
            (
                check(60, Some(10)),
                InvalidRequest::MaxTokensPastContext {
                    prompt_tokens: 60,
                    max_tokens: 10,
                    max_context: 64,
                },
                Param::MaxTokens,
            ),
            (
                InvalidRequest::check(&[1, 100], Some(5), 64, 100),
                InvalidRequest::TokenOutOfVocabulary {
                    token: 100,
                    vocab_size: 100,
                },
                Param::Prompt,
            ),
        ];
        for (got, want, param) in cases {
            assert_eq!(got, Err(want.clone()));
            assert_eq!(want.param(), param, "{want}");
        }
    }

    #[test]
    fn messages_say_what_to_do() {
        let m = InvalidRequest::PromptTooLong {
            prompt_tokens: 70,
            max_context: 64,
        }
        .to_string();
        assert!(
            m.contains("70") && m.contains("context is 64") && m.contains("shorten"),
            "{m}"
        );
        let m = InvalidRequest::MaxTokensPastContext {
            prompt_tokens: 60,
            max_tokens: 10,
            max_context: 64,
        }
        .to_string();
        assert!(
            m.contains("max_tokens is 10") && m.contains("at most 4 tokens"),
            "{m}"
        );
        let m = InvalidRequest::TokenOutOfVocabulary {
            token: 100,
            vocab_size: 100,
        }
        .to_string();
        assert!(m.contains("100") && m.contains("below 100"), "{m}");
    }

    #[test]
    fn a_request_that_fits_gets_its_max_tokens_or_the_rest_of_the_context() {
        assert_eq!(check(60, Some(4)), Ok(4));
        assert_eq!(check(60, None), Ok(4));
        assert_eq!(check(1, None), Ok(63));
        // The longest prompt leaves room for one token.
        assert_eq!(check(63, None), Ok(1));
    }
}
