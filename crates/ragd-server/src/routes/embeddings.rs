//! `POST /v1/embeddings`, in OpenAI's request and response shapes.

use axum::extract::State;
use axum::Json as AxumJson;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use ragd_engine::BatchLimits;

use crate::auth::Tenant;
use crate::error::ApiError;
use crate::input::{self, tokenize_and_frame, Input};
use crate::json::Json;
use crate::models::ModelHandle;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    pub model: String,
    #[serde(default)]
    pub input: Value,
    #[serde(default)]
    pub encoding_format: EncodingFormat,
    /// Accepted only when equal to the model's dimension (no Matryoshka truncation).
    pub dimensions: Option<usize>,
    /// OpenAI's end-user id; accepted and ignored.
    pub user: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

#[derive(Debug, Serialize)]
pub struct EmbeddingsResponse {
    pub object: &'static str,
    pub data: Vec<EmbeddingData>,
    pub model: String,
    pub usage: Usage,
}

#[derive(Debug, Serialize)]
pub struct EmbeddingData {
    pub object: &'static str,
    pub index: usize,
    pub embedding: EmbeddingValue,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EmbeddingValue {
    Float(Vec<f32>),
    /// Little-endian f32 bytes, base64: what the `openai` client decodes.
    Base64(String),
}

#[derive(Debug, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

pub async fn embeddings(
    State(state): State<AppState>,
    tenant: Tenant,
    Json(req): Json<EmbeddingsRequest>,
) -> Result<AxumJson<EmbeddingsResponse>, ApiError> {
    let handle = state
        .model_for("embedding", |m| m.embedder.as_ref(), Some(&req.model))?
        .for_tenant(&tenant);
    if let Some(d) = req.dimensions {
        if d != handle.output_dim {
            return Err(ApiError::invalid(
                format!(
                    "`dimensions` must be {} for model `{}` (got {d})",
                    handle.output_dim, handle.info.id
                ),
                "dimensions",
            ));
        }
    }
    let inputs = input::parse(&req.input, state.limits.input(true))?;
    let (vectors, tokens) = embed(&handle, inputs).await?;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingData {
            object: "embedding",
            index,
            embedding: match req.encoding_format {
                EncodingFormat::Float => EmbeddingValue::Float(v),
                EncodingFormat::Base64 => EmbeddingValue::Base64(to_base64(&v)),
            },
        })
        .collect();
    Ok(AxumJson(EmbeddingsResponse {
        object: "list",
        data,
        model: handle.info.id,
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}

/// Embeds `inputs` with the embedder `handle`: tokenized on the blocking
/// pool, framed, and sent to its batch worker in pieces that fit one batch,
/// one after the other (so other requests get their turn in between, and
/// a large request never becomes one oversized forward pass). This is the
/// one path from text to vectors: `/v1/embeddings`, document ingestion and
/// search queries all use it. Returns one vector per input and the number
/// of tokens embedded.
pub async fn embed(handle: &ModelHandle, inputs: Vec<Input>) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
    let seqs: Vec<Vec<u32>> =
        tokenize_and_frame(inputs, handle.tokenizer.clone(), handle.info.framing.clone())
            .await?
            .into_iter()
            .flatten()
            .collect();
    let tokens: usize = seqs.iter().map(Vec::len).sum();
    let mut vectors = Vec::with_capacity(seqs.len());
    for piece in pieces(seqs, &handle.batch) {
        vectors.extend(handle.worker.run(piece).await?);
    }
    Ok((vectors, tokens))
}

/// Splits `seqs`, in order, into pieces within the batch budget (a
/// sequence over the budget alone is a piece of its own).
fn pieces(seqs: Vec<Vec<u32>>, limits: &BatchLimits) -> Vec<Vec<Vec<u32>>> {
    let mut out: Vec<Vec<Vec<u32>>> = Vec::new();
    let mut tokens = 0;
    for seq in seqs {
        let n = seq.len();
        match out.last_mut() {
            Some(p) if p.len() < limits.max_batch_seqs && tokens + n <= limits.max_batch_tokens => {
                p.push(seq);
                tokens += n;
            }
            _ => {
                out.push(vec![seq]);
                tokens = n;
            }
        }
    }
    out
}

fn to_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_respect_the_batch_budget_and_keep_the_order() {
        let limits = BatchLimits {
            queue_capacity: 8,
            per_tenant_queue_capacity: None,
            max_batch_tokens: 10,
            max_batch_seqs: 3,
        };
        let seqs: Vec<Vec<u32>> = [4, 4, 4, 1, 1, 1, 1, 12, 2]
            .iter()
            .enumerate()
            .map(|(i, &n)| vec![i as u32; n])
            .collect();
        let got = pieces(seqs.clone(), &limits);
        let lens: Vec<Vec<usize>> = got.iter().map(|p| p.iter().map(Vec::len).collect()).collect();
        assert_eq!(
            lens,
            vec![vec![4, 4], vec![4, 1, 1], vec![1, 1], vec![12], vec![2]]
        );
        assert_eq!(got.into_iter().flatten().collect::<Vec<_>>(), seqs);
        assert!(pieces(Vec::new(), &limits).is_empty());
    }
}
