//! Text generation for `/v1/chat/completions` and `/v1/completions`:
//! request fields, submitting choices to the engine, and streaming them.

pub mod choice;
pub mod params;
pub mod stream;

use std::sync::Arc;

use ragd_core::{ModelInfo, TextTokenizer};
use ragd_engine::{GenerationEngine, GenerationRequest, TenantKey};
use ragd_models::llama::ChatTemplate;
use serde::Serialize;

pub use choice::{Choice, Piece, TokenInfo};
pub use params::{GenSettings, SamplingFields};

use crate::auth::Tenant;
use crate::error::ApiError;

/// The loaded generator as the routes see it.
#[derive(Clone)]
pub struct GeneratorHandle {
    pub info: ModelInfo,
    pub tokenizer: Arc<dyn TextTokenizer>,
    /// The model's own chat template, when it has one.
    pub template: Option<Arc<ChatTemplate>>,
    pub engine: GenerationEngine,
    /// End-of-turn tokens: generation stops there (finish_reason `stop`).
    pub stop_tokens: Vec<u32>,
}

/// OpenAI's `usage`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct UsageJson {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl UsageJson {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// Submits the `n` choices of one request, queued as `tenant`'s (its share
/// of the engine's queue; 429 beyond it). The engine checks the prompt and
/// `max_tokens` (400 otherwise, with the numbers); `prompt_field` names the
/// request field that held the prompt in its errors (`messages` for chat,
/// `prompt` for completions).
pub fn submit(
    handle: &GeneratorHandle,
    tenant: &Tenant,
    prompt: &[u32],
    settings: &GenSettings,
    prompt_field: &'static str,
) -> Result<Vec<Choice>, ApiError> {
    let tenant = TenantKey::new(tenant.as_str());
    (0..settings.n)
        .map(|i| {
            let request = GenerationRequest {
                prompt: prompt.to_vec(),
                max_tokens: settings.max_tokens,
                sampling: settings.sampling_for(i),
                stop_tokens: handle.stop_tokens.clone(),
                ignore_eos: settings.ignore_eos,
            };
            let stream = (handle.engine.submit_as(&tenant, request))
                .map_err(|e| ApiError::from_engine(e, prompt_field))?;
            Ok(Choice::new(
                stream,
                handle.tokenizer.clone(),
                settings.stop.clone(),
            ))
        })
        .collect()
}

/// Runs every choice to the end (non-streaming responses): the pieces in
/// choice order and the total completion tokens.
pub async fn collect_all(choices: Vec<Choice>) -> Result<(Vec<Piece>, usize), ApiError> {
    let results = futures::future::join_all(choices.into_iter().map(Choice::collect)).await;
    let mut pieces = Vec::with_capacity(results.len());
    let mut tokens = 0;
    for r in results {
        let (piece, n) = r?;
        tokens += n;
        pieces.push(piece);
    }
    Ok((pieces, tokens))
}

/// Seconds since the Unix epoch, for `created`.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
