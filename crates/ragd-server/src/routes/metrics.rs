//! `GET /metrics`: every registered metric in Prometheus' text format.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, TextEncoder};

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> Response {
    if let Some(collections) = &state.collections {
        collections.refresh_metrics().await;
    }
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&state.registry.gather(), &mut buf) {
        return ApiError::Internal(e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, encoder.format_type().to_string())], buf).into_response()
}
