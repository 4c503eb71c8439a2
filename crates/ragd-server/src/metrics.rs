//! HTTP metrics and the `/metrics` endpoint (Prometheus text format).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::state::AppState;

/// HTTP-level metrics, labelled by route template (never a raw path, which
/// would be unbounded) and status.
#[derive(Clone)]
pub struct HttpMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    /// Requests refused by a key's rate limit (429).
    pub rate_limited: IntCounter,
}

impl HttpMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "ragd_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "ragd_http_request_duration_seconds",
                "HTTP request duration by route",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 16)?),
            &["route", "method"],
        )?;
        let rate_limited = IntCounter::new(
            "ragd_rate_limited_requests_total",
            "Requests refused (429) because their API key used up its rate limit",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        Ok(Self {
            requests,
            duration,
            rate_limited,
        })
    }
}

/// Middleware recording every request.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = method_label(req.method());
    let t0 = Instant::now();
    let response = next.run(req).await;
    let m = &state.http_metrics;
    m.duration
        .with_label_values(&[&route, method])
        .observe(t0.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[&route, method, response.status().as_str()])
        .inc();
    response
}

/// The method as a label: the standard ones by name, anything else
/// `other`. A raw client-chosen method would make the label set, and so
/// `/metrics`, grow without bound.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::PATCH, "PATCH"),
        (Method::TRACE, "TRACE"),
        (Method::CONNECT, "CONNECT"),
    ];
    KNOWN
        .iter()
        .find(|(m, _)| m == method)
        .map_or("other", |(_, name)| name)
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> Response {
    if let Some(store) = state.store.clone() {
        // Collection locks may be held by a write: off the async threads.
        if let Ok((stats, quarantined)) =
            tokio::task::spawn_blocking(move || (store.stats(), store.quarantined().len())).await
        {
            let m = &state.index_metrics;
            m.documents.set(stats.documents as i64);
            m.chunks.set(stats.chunks as i64);
            m.collections.set(stats.collections as i64);
            m.quarantined.set(quarantined as i64);
        }
    }
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&state.registry.gather(), &mut buf) {
        return crate::error::ApiError::Internal(e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, encoder.format_type().to_string())], buf).into_response()
}
