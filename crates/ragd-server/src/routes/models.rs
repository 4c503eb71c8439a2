//! `GET /v1/models` and `GET /v1/models/{id}`.

use crate::path::Path;
use axum::extract::State;
use axum::Json;
use serde::Serialize;

use ragd_service::Models;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Serialize)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
    /// ragd extension: what the model does (`embedder`, `guard`, `generator`).
    pub kind: ragd_core::ModelKind,
    /// ragd extension: longest input one forward pass takes, in tokens.
    pub max_input_tokens: usize,
    /// ragd extension, generators only: the tool-call syntax it writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_format: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

fn card(models: &Models, h: &ragd_core::ModelInfo) -> ModelCard {
    let tool_call_format = (models.generator.as_ref())
        .filter(|g| g.info.id == h.id)
        .map(|g| g.tool_format.to_string());
    ModelCard {
        tool_call_format,
        id: h.id.clone(),
        object: "model",
        created: 0,
        owned_by: "ragd",
        kind: h.kind,
        max_input_tokens: h.framing.max_len,
    }
}

pub async fn list(State(state): State<AppState>) -> Json<ModelList> {
    let data = state
        .models()
        .map(|m| m.all().map(|h| card(m, h)).collect())
        .unwrap_or_default();
    Json(ModelList { object: "list", data })
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<ModelCard>, ApiError> {
    state
        .models()
        .and_then(|m| m.all().find(|h| h.id == id).map(|h| Json(card(m, h))))
        .ok_or(ApiError::ModelNotFound(id))
}
