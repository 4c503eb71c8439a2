//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::state::{AppState, ServerState};

/// `GET /health`: the process is up and serving HTTP (also while it drains).
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /ready`: 200 once every configured model is loaded, else 503;
/// 503 again from the moment a drain starts (status `draining`).
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let draining = state.drain.is_draining();
    let ready = serving(&state);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let label = match (ready, draining) {
        (true, _) => "ready",
        (false, true) => "draining",
        (false, false) => "loading",
    };
    let models: Vec<String> = state
        .models()
        .map(|m| m.all().map(|h| h.id.clone()).collect())
        .unwrap_or_default();
    (
        status,
        Json(json!({
            "status": label,
            "expected": state.expected,
            "loaded": models,
        })),
    )
}

/// Whether `/ready` answers 200: every model loaded and no drain started
/// (also `ragd_ready` on `/metrics`).
pub(crate) fn serving(state: &ServerState) -> bool {
    state.is_ready() && !state.drain.is_draining()
}
