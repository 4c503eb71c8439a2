//! Request deadlines on the generation endpoints: `--request-timeout-seconds`,
//! shortened by the client's own timeout where it sends one
//! (`x-stainless-timeout`, which OpenAI's SDKs send, or `x-request-timeout`;
//! seconds). Past the deadline the answer is dropped, which cancels its
//! generation and frees its KV blocks: a whole answer becomes 504
//! `timeout`; a stream ends with an error event.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::state::AppState;

/// Client headers that carry a timeout in seconds.
const CLIENT_TIMEOUT_HEADERS: [&str; 2] = ["x-stainless-timeout", "x-request-timeout"];

/// The request's time budget: the server's, or the client's when shorter.
fn budget(server: Option<Duration>, headers: &HeaderMap) -> Option<Duration> {
    let client = (CLIENT_TIMEOUT_HEADERS.iter())
        .filter_map(|h| headers.get(*h)?.to_str().ok()?.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.min(86_400.0)))
        .min();
    match (server, client) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub async fn enforce(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(limit) = budget(state.request_timeout, req.headers()) else {
        return next.run(req).await;
    };
    let until = Instant::now() + limit;
    let response = match tokio::time::timeout_at(until, next.run(req)).await {
        Ok(response) => response,
        Err(_) => return ApiError::Timeout(limit).into_response(),
    };
    let streamed = (response.headers().get(header::CONTENT_TYPE))
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !streamed {
        return response;
    }
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Body::from_stream(cut_at(body, until, limit)))
}

/// `body` until `until`; then an error event, and the body is dropped.
fn cut_at(
    body: Body,
    until: Instant,
    limit: Duration,
) -> impl futures::Stream<Item = Result<Bytes, axum::Error>> {
    let chunks = Some(body.into_data_stream());
    futures::stream::unfold(chunks, move |chunks| async move {
        let mut chunks = chunks?;
        match tokio::time::timeout_at(until, chunks.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(chunks))),
            Ok(None) => None,
            Err(_) => {
                let error = ApiError::Timeout(limit);
                let event = serde_json::json!({"error": {"message": error.to_string(),
                    "type": "timeout_error", "code": "timeout"}});
                Some((Ok(Bytes::from(format!("data: {event}\n\n"))), None))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shorter_of_server_and_client_budgets_wins() {
        let mut h = HeaderMap::new();
        let s = Duration::from_secs;
        assert_eq!(budget(None, &h), None);
        assert_eq!(budget(Some(s(60)), &h), Some(s(60)));
        h.insert("x-stainless-timeout", "5".parse().unwrap());
        assert_eq!(budget(Some(s(60)), &h), Some(s(5)));
        assert_eq!(budget(None, &h), Some(s(5)));
        h.insert("x-stainless-timeout", "600".parse().unwrap());
        assert_eq!(budget(Some(s(60)), &h), Some(s(60)));
        h.insert("x-stainless-timeout", "nonsense".parse().unwrap());
        assert_eq!(budget(Some(s(60)), &h), Some(s(60)));
    }
}
