//! `POST /v1/completions` (legacy text completions), streaming or not.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use ragd_service::cache::{self, CacheKeyParts, Lookup};
use ragd_service::chat::CacheHit;
use ragd_service::generation::{self, now_unix, Piece, SamplingFields, TokenInfo};
use ragd_service::Usage;

use crate::auth::Authed;
use crate::cache_http;
use crate::error::ApiError;
use crate::input::{self, Input};
use crate::json::Json;
use crate::sse::{sse, ChunkFormat};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    /// A string, or token ids (one prompt per request).
    #[serde(default)]
    pub prompt: Value,
    /// Alternatives per token (0 = the chosen token's logprob only).
    pub logprobs: Option<u32>,
    #[serde(default)]
    pub echo: bool,
    pub suffix: Option<String>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

pub async fn completions(
    State(state): State<AppState>,
    Authed(tenant): Authed,
    headers: HeaderMap,
    Json(req): Json<CompletionRequest>,
) -> Result<Response, ApiError> {
    let handle = state.generator(Some(&req.model))?;
    if req.echo {
        return Err(ApiError::invalid("`echo` is not supported", "echo"));
    }
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid("`suffix` is not supported", "suffix"));
    }
    let settings = req.sampling.validate(None, req.logprobs)?;
    let mut prompts = input::parse(&req.prompt, input::limits(&state.request_limits, true))?;
    if prompts.len() != 1 {
        return Err(ApiError::invalid(
            "`prompt` must be one string or one array of token ids",
            "prompt",
        ));
    }
    let prompt = match prompts.remove(0) {
        // The engine checks the ids against the model's vocabulary.
        Input::Tokens(ids) => ids,
        Input::Text(text) => {
            let tokenizer = handle.tokenizer.clone();
            tokio::task::spawn_blocking(move || tokenizer.encode(&text))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .map_err(ragd_service::ServiceError::from)?
        }
    };
    let format = CompletionFormat {
        id: format!("cmpl-{}", uuid::Uuid::new_v4().simple()),
        created: now_unix(),
        model: handle.info.id.clone(),
        logprobs: req.logprobs.is_some(),
    };
    let cache = (state.response_cache.as_ref())
        .filter(|_| cache::cacheable(&settings, cache_http::client_bypass(&headers)));
    let parts = CacheKeyParts {
        tenant: &tenant,
        endpoint: "completions",
        model: &format.model,
        prompt: &prompt,
        settings: &settings,
        extra: None,
    };
    let lookup = match cache {
        Some(c) => Some(c.lookup(parts).await),
        None => None,
    };
    let key = match lookup {
        Some(Lookup::Hit(body)) => {
            return Ok(cache_http::reissue(
                body,
                &format.id,
                format.created,
                CacheHit::Exact,
            ))
        }
        Some(Lookup::Miss(key)) => Some(key),
        None => None,
    };
    let choices = generation::submit(&handle, &tenant, &prompt, &settings, "prompt")?;
    if settings.stream {
        return Ok(sse(choices, prompt.len(), settings.include_usage, format).into_response());
    }
    let (pieces, usage) = generation::collect_all(choices, prompt.len()).await?;
    let choices: Vec<Value> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| format.choice(i, p))
        .collect();
    let body = json!({
        "id": format.id,
        "object": "text_completion",
        "created": format.created,
        "model": format.model,
        "choices": choices,
        "usage": usage,
    });
    let cache_missed = key.is_some();
    if let (Some(cache), Some(key)) = (cache, key) {
        cache.put(key, &body).await;
    }
    Ok(cache_http::fresh(body, cache_missed))
}

/// The legacy logprobs shape: parallel lists, top alternatives as maps.
fn logprobs_json(tokens: &[TokenInfo]) -> Value {
    let mut offset = 0;
    let mut offsets = Vec::with_capacity(tokens.len());
    for t in tokens {
        offsets.push(offset);
        offset += t.token.len();
    }
    json!({
        "tokens": tokens.iter().map(|t| t.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": tokens
            .iter()
            .map(|t| t.top.iter().map(|(s, l)| (s.clone(), json!(l))).collect::<serde_json::Map<_, _>>())
            .collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

struct CompletionFormat {
    id: String,
    created: u64,
    model: String,
    logprobs: bool,
}

impl CompletionFormat {
    fn choice(&self, index: usize, piece: &Piece) -> Value {
        json!({
            "index": index,
            "text": piece.text,
            "logprobs": if self.logprobs { logprobs_json(&piece.logprobs) } else { Value::Null },
            "finish_reason": piece.finish_reason,
        })
    }

    fn chunk(&self, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }
}

impl ChunkFormat for CompletionFormat {
    fn opening(&self, _index: usize) -> Option<Value> {
        None
    }

    fn piece(&self, index: usize, piece: &Piece) -> Value {
        self.chunk(json!([self.choice(index, piece)]))
    }

    fn usage(&self, usage: Usage) -> Value {
        let mut v = self.chunk(json!([]));
        v["usage"] = json!(usage);
        v
    }
}
