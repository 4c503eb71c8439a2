//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;

/// `GET /health`: the process is up and serving HTTP.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /ready`: 200 once every configured model is loaded, else 503.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let ready = state.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let models: Vec<String> = state
        .models()
        .map(|m| m.all().map(|h| h.id.clone()).collect())
        .unwrap_or_default();
    (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "loading" },
            "expected": state.expected,
            "loaded": models,
        })),
    )
}
