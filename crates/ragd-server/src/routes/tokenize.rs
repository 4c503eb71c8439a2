//! `POST /tokenize` and `POST /detokenize` (also under `/v1`), in vLLM's
//! shapes: a prompt or chat messages to the generator's token ids, and
//! token ids back to text. The ids are those the completion endpoints feed
//! the model (`ragd_service::tokenize`).

use axum::extract::State;
use axum::Json as AxumJson;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use ragd_service::tokenize;

use crate::auth::Authed;
use crate::error::ApiError;
use crate::input;
use crate::json::Json;
use crate::routes::chat::{self, MessageIn};
use crate::state::AppState;

/// A prompt (`prompt`) or a conversation (`messages`), not both.
#[derive(Debug, Deserialize)]
pub struct TokenizeRequest {
    pub model: String,
    pub prompt: Option<String>,
    pub messages: Option<Vec<MessageIn>>,
    /// Messages only: end with the assistant's turn opening, as chat
    /// completions do. Default true.
    pub add_generation_prompt: Option<bool>,
    /// Add the generator's own special tokens around the sequence. Default
    /// true for a prompt, false for messages (the template has its own).
    pub add_special_tokens: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct TokenizeResponse {
    pub tokens: Vec<u32>,
    pub count: usize,
    /// Longest sequence (prompt plus completion) the server runs.
    pub max_model_len: usize,
}

#[derive(Debug, Deserialize)]
pub struct DetokenizeRequest {
    pub model: String,
    /// Token ids; checked by hand so each bad id is named.
    #[serde(default)]
    pub tokens: Value,
}

#[derive(Debug, Serialize)]
pub struct DetokenizeResponse {
    pub prompt: String,
}

pub async fn tokenize(
    State(state): State<AppState>,
    Authed(_): Authed,
    Json(req): Json<TokenizeRequest>,
) -> Result<AxumJson<TokenizeResponse>, ApiError> {
    let handle = state.generator(Some(&req.model))?;
    let tokens = match (req.prompt, req.messages) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give either `prompt` or `messages`, not both",
                "messages",
            ))
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "`prompt` (a string) or `messages` (a conversation) is required",
                "prompt",
            ))
        }
        (Some(prompt), None) => {
            let max = state.request_limits.max_input_bytes;
            if prompt.len() > max {
                return Err(ApiError::invalid(
                    format!(
                        "`prompt` is {} bytes long; at most {max} are allowed",
                        prompt.len()
                    ),
                    "prompt",
                ));
            }
            let special = req.add_special_tokens.unwrap_or(true);
            tokenize::tokenize_text(&handle, prompt, special).await?
        }
        (None, Some(messages)) => {
            // The same checks and limits as chat completions.
            let messages = chat::messages(&messages, &state.request_limits, handle.tool_format)?;
            let generation_prompt = req.add_generation_prompt.unwrap_or(true);
            let special = req.add_special_tokens.unwrap_or(false);
            tokenize::tokenize_messages(&handle, messages, generation_prompt, special).await?
        }
    };
    Ok(AxumJson(TokenizeResponse {
        count: tokens.len(),
        tokens,
        max_model_len: tokenize::max_model_len(&handle),
    }))
}

pub async fn detokenize(
    State(state): State<AppState>,
    Authed(_): Authed,
    Json(req): Json<DetokenizeRequest>,
) -> Result<AxumJson<DetokenizeResponse>, ApiError> {
    let handle = state.generator(Some(&req.model))?;
    let ids = token_ids(&req.tokens)?;
    // The service checks the ids against the vocabulary.
    let prompt = tokenize::detokenize(&handle, ids).await?;
    Ok(AxumJson(DetokenizeResponse { prompt }))
}

/// `tokens` as ids: an array of non-negative integers.
fn token_ids(value: &Value) -> Result<Vec<u32>, ApiError> {
    let items = match value {
        Value::Array(items) => items,
        Value::Null => return Err(ApiError::invalid("`tokens` is required", "tokens")),
        _ => {
            return Err(ApiError::invalid(
                "`tokens` must be an array of token ids",
                "tokens",
            ))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let id = v.as_u64().ok_or_else(|| {
                // A number is short to show; other values may not be.
                let got = match v {
                    Value::Number(n) => n.to_string(),
                    other => input::type_name(other).to_string(),
                };
                ApiError::invalid(
                    format!("`tokens[{i}]` must be a token id (a non-negative integer), got {got}"),
                    "tokens",
                )
            })?;
            u32::try_from(id).map_err(|_| {
                ApiError::invalid(format!("`tokens[{i}]` is {id}, outside the vocabulary"), "tokens")
            })
        })
        .collect()
}
