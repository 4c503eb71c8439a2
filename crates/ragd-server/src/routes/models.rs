//! `GET /v1/models` and `GET /v1/models/{id}`.

use crate::path::Path;
use axum::extract::State;
use axum::Json;
use serde::Serialize;

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
}

#[derive(Debug, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

fn card(h: &ragd_core::ModelInfo) -> ModelCard {
    ModelCard {
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
        .map(|m| m.all().map(card).collect())
        .unwrap_or_default();
    Json(ModelList { object: "list", data })
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<ModelCard>, ApiError> {
    state
        .models()
        .and_then(|m| m.all().find(|h| h.id == id))
        .map(|h| Json(card(h)))
        .ok_or(ApiError::ModelNotFound(id))
}
