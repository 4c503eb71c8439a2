//! `GET /metrics`: every registered metric in Prometheus' text format.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, TextEncoder};

use crate::error::ApiError;
use crate::routes::health::serving;
use crate::state::AppState;

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> Response {
    if let Some(collections) = &state.collections {
        collections.refresh_metrics().await;
    }
    if let Some(upstreams) = &state.upstreams {
        upstreams.refresh_metrics();
    }
    (state.http_metrics.ready).set(i64::from(serving(&state)));
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&state.registry.gather(), &mut buf) {
        return ApiError::Internal(e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, encoder.format_type().to_string())], buf).into_response()
}

#[cfg(test)]
mod tests {
    use prometheus::Registry;
    use ragd_service::Models;

    use super::*;
    use crate::state::{ServerState, StateConfig};

    async fn ready_line(state: &AppState) -> String {
        let body = axum::body::to_bytes(render(State(state.clone())).await.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        let line = text.lines().find(|l| l.starts_with("ragd_ready "));
        line.unwrap_or_else(|| panic!("no ragd_ready:\n{text}"))
            .to_string()
    }

    #[tokio::test]
    async fn ragd_ready_follows_the_readiness_of_slash_ready() {
        let state = ServerState::build(StateConfig::default(), Registry::new()).unwrap();
        assert_eq!(ready_line(&state).await, "ragd_ready 0", "models loading");
        state.set_models(Models::default());
        assert_eq!(ready_line(&state).await, "ragd_ready 1");
        state.drain.start();
        assert_eq!(ready_line(&state).await, "ragd_ready 0", "draining");
    }
}
