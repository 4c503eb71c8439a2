//! The `Server-Timing` header on every `/v1` answer: the pipeline's stages
//! (`guard`, `retrieve`, `prompt`, `cache`, `ttft` = queue + prefill,
//! `decode`) and `total`, in milliseconds, so a browser's devtools or a
//! client sees where the time went. A stream's header is sent before its
//! tokens, so it holds the stages before generation.

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use ragd_service::timing::Stages;

pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

pub async fn add(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let stages = Stages::default();
    let mut response = stages.clone().scope(next.run(req)).await;
    let mut parts: Vec<String> = (stages.list().into_iter())
        .map(|(name, took)| format!("{name};dur={:.1}", took.as_secs_f64() * 1e3))
        .collect();
    parts.push(format!("total;dur={:.1}", start.elapsed().as_secs_f64() * 1e3));
    if let Ok(value) = HeaderValue::from_str(&parts.join(", ")) {
        response.headers_mut().insert(SERVER_TIMING, value);
    }
    response
}
