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

/// Guard decisions on the chat path, by stage (`input`, `context`).
#[derive(Clone)]
pub struct GuardMetrics {
    /// Requests refused (input) and retrieved chunks left out (context).
    pub blocks: IntCounterVec,
}

impl GuardMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let blocks = IntCounterVec::new(
            Opts::new(
                "ragd_guard_blocks_total",
                "Chat requests refused (stage input) and retrieved chunks left out of prompts (stage context) by the injection guard",
            ),
            &["stage"],
        )?;
        registry.register(Box::new(blocks.clone()))?;
        Ok(Self { blocks })
    }
}

/// Knowledge-base metrics. Totals over the whole store: never a tenant or
/// collection label (unbounded, and it would leak tenant names).
#[derive(Clone)]
pub struct IndexMetrics {
    /// Time a search spends in the index (the query's embedding is in the
    /// embedder's own metrics).
    pub search_seconds: Histogram,
    /// Cosine similarity of the best hit of each search that found one.
    pub top_score: Histogram,
    /// Documents and chunks stored, refreshed at each scrape.
    pub documents: IntGauge,
    pub chunks: IntGauge,
    pub collections: IntGauge,
    /// Collections that failed to load and are out of service.
    pub quarantined: IntGauge,
    pub ingested_documents: IntCounter,
}

impl IndexMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let search_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "ragd_search_latency_seconds",
                "Time a collection search spends in the index",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 2.0, 16)?),
        )?;
        let top_score = Histogram::with_opts(
            HistogramOpts::new(
                "ragd_retrieval_top_score",
                "Cosine similarity of the best hit of each search",
            )
            .buckets(prometheus::linear_buckets(0.0, 0.05, 21)?),
        )?;
        let documents = IntGauge::new("ragd_documents", "Documents in the knowledge base (all tenants)")?;
        let chunks = IntGauge::new("ragd_chunks", "Chunks in the knowledge base (all tenants)")?;
        let collections = IntGauge::new(
            "ragd_collections",
            "Collections in the knowledge base (all tenants)",
        )?;
        let quarantined = IntGauge::new(
            "ragd_quarantined_collections",
            "Collections whose files failed to load, kept for inspection and out of service (all tenants)",
        )?;
        let ingested_documents = IntCounter::new(
            "ragd_ingested_documents_total",
            "Documents written (inserted or replaced) through the collections API",
        )?;
        registry.register(Box::new(search_seconds.clone()))?;
        registry.register(Box::new(top_score.clone()))?;
        registry.register(Box::new(documents.clone()))?;
        registry.register(Box::new(chunks.clone()))?;
        registry.register(Box::new(collections.clone()))?;
        registry.register(Box::new(quarantined.clone()))?;
        registry.register(Box::new(ingested_documents.clone()))?;
        Ok(Self {
            search_seconds,
            top_score,
            documents,
            chunks,
            collections,
            quarantined,
            ingested_documents,
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
