//! The caches at the HTTP edge: whether a client asked to bypass them
//! (`Cache-Control: no-cache` / `no-store`), and the `x-ragd-cache` header
//! saying what answered (`hit`, `semantic-hit`, `miss`).

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use ragd_service::chat::CacheHit;
use serde_json::Value;

/// Response header saying whether a cache answered (`hit`, or
/// `semantic-hit` for the semantic cache) or the model did (`miss`).
pub const CACHE_HEADER: HeaderName = HeaderName::from_static("x-ragd-cache");

/// Whether the request asks not to be answered from a cache.
pub fn client_bypass(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| matches!(d.trim().to_ascii_lowercase().as_str(), "no-cache" | "no-store"))
}

/// A cached body as the answer to a new request: its own `id` and
/// `created`, marked with the cache that answered.
pub fn reissue(mut body: Value, id: &str, created: u64, hit: CacheHit) -> Response {
    body["id"] = id.into();
    body["created"] = created.into();
    let label = match hit {
        CacheHit::Exact => "hit",
        CacheHit::Semantic => "semantic-hit",
    };
    respond(body, Some(label))
}

/// A JSON response, marked `miss` when a cache was asked and missed.
pub fn fresh(body: Value, cache_missed: bool) -> Response {
    respond(body, cache_missed.then_some("miss"))
}

fn respond(body: Value, label: Option<&'static str>) -> Response {
    let mut response = axum::Json(body).into_response();
    if let Some(label) = label {
        response
            .headers_mut()
            .insert(CACHE_HEADER, HeaderValue::from_static(label));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cache_and_no_store_bypass_in_any_case_and_position() {
        let mut h = HeaderMap::new();
        assert!(!client_bypass(&h));
        h.insert("cache-control", HeaderValue::from_static("max-age=0, No-Cache"));
        assert!(client_bypass(&h));
        h.insert("cache-control", HeaderValue::from_static("no-store"));
        assert!(client_bypass(&h));
        h.insert("cache-control", HeaderValue::from_static("max-age=60"));
        assert!(!client_bypass(&h));
    }
}
