//! `POST /v1/embeddings`, in OpenAI's request and response shapes.

use axum::extract::State;
use axum::Json as AxumJson;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use ragd_service::embedding::embed;
use ragd_service::Usage;

use crate::auth::Authed;
use crate::error::ApiError;
use crate::input;
use crate::json::Json;
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

pub async fn embeddings(
    State(state): State<AppState>,
    Authed(tenant): Authed,
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
    let inputs = input::parse(&req.input, input::limits(&state.request_limits, true))?;
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
        usage: Usage::input(tokens),
    }))
}

fn to_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
