//! Text generation for chat and completions: sampling settings, submitting
//! a request's choices to the engine, and turning their tokens into text.

pub mod choice;
pub mod output_check;
pub mod params;
pub mod structured;

use ragd_engine::{GenerationRequest, TenantKey};

pub use choice::{Choice, Piece, TokenInfo};
pub use params::{GenSettings, SamplingFields};
pub use structured::ResponseFormat;

use crate::error::ServiceError;
use crate::models::GeneratorHandle;
use crate::tenant::Tenant;
use crate::usage::Usage;

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
) -> Result<Vec<Choice>, ServiceError> {
    let tenant = TenantKey::new(tenant.as_str());
    (0..settings.n)
        .map(|i| {
            let constraint = match &handle.grammars {
                Some(grammars) => grammars.constraint(&settings.response_format)?,
                None if settings.response_format != ResponseFormat::Text => {
                    return Err(ServiceError::invalid(
                        format!("model `{}` does not support `response_format`", handle.info.id),
                        "response_format",
                    ))
                }
                None => None,
            };
            let request = GenerationRequest {
                prompt: prompt.to_vec(),
                max_tokens: settings.max_tokens,
                sampling: settings.sampling_for(i),
                stop_tokens: handle.stop_tokens.clone(),
                ignore_eos: settings.ignore_eos,
                constraint,
                priority: settings.priority,
            };
            let stream = (handle.engine.submit_as(&tenant, request))
                .map_err(|e| ServiceError::from_engine(e, prompt_field))?;
            Ok(Choice::new(
                stream,
                handle.tokenizer.clone(),
                settings.stop.clone(),
            ))
        })
        .collect()
}

/// Runs every choice to the end (non-streaming responses): the pieces in
/// choice order and the usage of the request, whose prompt has
/// `prompt_tokens` tokens.
pub async fn collect_all(
    choices: Vec<Choice>,
    prompt_tokens: usize,
) -> Result<(Vec<Piece>, Usage), ServiceError> {
    let start = std::time::Instant::now();
    let results = futures::future::join_all(choices.into_iter().map(Choice::collect)).await;
    let mut pieces = Vec::with_capacity(results.len());
    let (mut tokens, mut cached, mut first) = (0, 0, None::<std::time::Instant>);
    for r in results {
        let (piece, [n, n_cached], first_token) = r?;
        tokens += n;
        // The choices share the prompt: it is counted once.
        cached = cached.max(n_cached);
        pieces.push(piece);
        first = match (first, first_token) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    if let Some(first) = first {
        crate::timing::record("ttft", first - start);
        crate::timing::record("decode", first.elapsed());
    }
    Ok((pieces, Usage::completion(prompt_tokens, tokens, cached)))
}

/// Seconds since the Unix epoch, for `created`.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
