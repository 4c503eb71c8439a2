//! HTTP metrics and the middleware that records them. (`GET /metrics` is
//! `routes/metrics.rs`; the service layer registers its own metrics.)

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// HTTP-level metrics, labelled by route template (never a raw path, which
/// would be unbounded) and status.
#[derive(Clone)]
pub struct HttpMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    /// Requests refused by a key's rate limit (429).
    pub rate_limited: IntCounter,
    /// 1 while `/ready` answers 200, else 0; set at each scrape.
    pub ready: IntGauge,
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
        let ready = IntGauge::new(
            "ragd_ready",
            "1 when the server is ready (GET /ready answers 200), 0 while models load or after a stop signal (draining)",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        Ok(Self {
            requests,
            duration,
            rate_limited,
            ready,
        })
    }
}

/// Middleware recording every request.
pub async fn track(State(m): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = method_label(req.method());
    let t0 = Instant::now();
    let response = next.run(req).await;
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
