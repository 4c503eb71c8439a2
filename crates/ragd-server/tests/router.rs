//! The router without sockets or models (`tower::ServiceExt::oneshot`):
//! readiness while loading, and errors that need no model.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ragd_server::rate_limit::RateLimits;
use ragd_server::state::{ServerState, StateConfig};
use ragd_service::RequestLimits;
use tower::ServiceExt;

fn loading_app() -> axum::Router {
    let config = StateConfig {
        expected: vec!["embedder"],
        request_limits: limits(),
        ..StateConfig::default()
    };
    let state = ServerState::build(config, prometheus::Registry::new()).unwrap();
    ragd_server::app::router(state, 1024, true)
}

fn limits() -> RequestLimits {
    RequestLimits {
        max_inputs: 16,
        max_input_bytes: 1024,
        max_chat_bytes: 4096,
    }
}

async fn call(app: axum::Router, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let (status, _, body) = call_with_headers(app, req).await;
    (status, body)
}

async fn call_with_headers(
    app: axum::Router,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let resp = app.oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn not_ready_until_models_load() {
    let (status, body) = call(loading_app(), Request::get("/ready").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "loading");
    let (status, _) = call(
        loading_app(),
        Request::get("/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn requests_while_loading_get_503_in_openai_shape() {
    let req = Request::post("/v1/embeddings")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"model": "m", "input": "hi"}"#))
        .unwrap();
    let (status, body) = call(loading_app(), req).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["type"], "server_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("loading"));
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let req = Request::post("/v1/embeddings")
        .header("content-type", "application/json")
        .body(Body::from(format!(
            r#"{{"model": "m", "input": "{}"}}"#,
            "x".repeat(2000)
        )))
        .unwrap();
    let (status, body) = call(loading_app(), req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "request_too_large");
}

/// A keyed app (no models) with one key for tenant `acme` and one for
/// `globex`.
fn keyed_app(dir: &std::path::Path, rate_limits: Option<RateLimits>) -> (axum::Router, [String; 2]) {
    keyed_app_with(dir, rate_limits, None)
}

fn keyed_app_with(
    dir: &std::path::Path,
    rate_limits: Option<RateLimits>,
    auth_failures_per_minute: Option<std::num::NonZeroU32>,
) -> (axum::Router, [String; 2]) {
    use ragd_server::auth::keys::KeyRing;
    use ragd_server::auth::{AdminKey, Auth};

    let keys = KeyRing::load(&dir.join("keys.toml")).unwrap();
    let (_, acme) = keys.create("acme", None).unwrap();
    let (_, globex) = keys.create("globex", None).unwrap();
    let config = StateConfig {
        auth: Auth::Keys {
            keys: std::sync::Arc::new(keys),
            admin: Some(AdminKey::new("router-admin-key-0123")),
        },
        rate_limits,
        auth_failures_per_minute,
        request_limits: limits(),
        ..StateConfig::default()
    };
    let state = ServerState::build(config, prometheus::Registry::new()).unwrap();
    (ragd_server::app::router(state, 1024, true), [acme, globex])
}

#[tokio::test]
async fn v1_needs_a_known_key_and_health_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (app, [key, _]) = keyed_app(dir.path(), None);
    for (auth, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("Bearer rk-unknown".to_string()), StatusCode::UNAUTHORIZED),
        (Some(format!("Bearer {key}")), StatusCode::OK),
    ] {
        let mut req = Request::get("/v1/models");
        if let Some(auth) = &auth {
            req = req.header("authorization", auth);
        }
        let (status, body) = call(app.clone(), req.body(Body::empty()).unwrap()).await;
        assert_eq!(status, want, "{auth:?}: {body}");
        if want == StatusCode::UNAUTHORIZED {
            assert_eq!(body["error"]["code"], "invalid_api_key");
            assert_eq!(body["error"]["type"], "invalid_request_error");
        }
    }
    let (status, _) = call(app.clone(), Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    // A tenant key is not the admin key.
    let req = Request::get("/admin/keys")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(app.clone(), req).await.0, StatusCode::UNAUTHORIZED);
    let req = Request::get("/admin/keys")
        .header("authorization", "Bearer router-admin-key-0123")
        .body(Body::empty())
        .unwrap();
    let (status, body) = call(app, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"][0]["tenant"], "acme");
}

fn models_request(key: &str) -> Request<Body> {
    Request::get("/v1/models")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_key_past_its_rate_limit_gets_429_with_retry_after_and_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let per_minute = std::num::NonZeroU32::new(2).unwrap();
    let (app, [acme, globex]) = keyed_app(dir.path(), Some(RateLimits::new(per_minute, None)));
    for remaining in ["1", "0"] {
        let (status, headers, body) = call_with_headers(app.clone(), models_request(&acme)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers["x-ratelimit-limit-requests"], "2");
        assert_eq!(headers["x-ratelimit-remaining-requests"], remaining);
    }
    let (status, headers, body) = call_with_headers(app.clone(), models_request(&acme)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["type"], "requests");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("2 requests per minute"));
    // Two a minute: the next one in 30 s.
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((29..=30).contains(&retry), "Retry-After {retry}");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
    // Another key has its own budget.
    let (status, _, body) = call_with_headers(app.clone(), models_request(&globex)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // An unknown key is a 401, not a 429, and takes nothing from anyone.
    assert_eq!(
        call(app.clone(), models_request("rk-unknown")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let resp = app
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(
        text.lines().any(|l| l == "ragd_rate_limited_requests_total 1"),
        "{text}"
    );
}

async fn metrics_text(app: axum::Router) -> String {
    let resp = app
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// Issue 10, finding 4: the raw method was a metric label, so made-up
/// methods grew `/metrics` without bound.
#[tokio::test]
async fn made_up_methods_share_one_metric_label() {
    let app = loading_app();
    for i in 0..50 {
        let req = Request::builder()
            .method(format!("MADEUP{i}").as_str())
            .uri("/health")
            .body(Body::empty())
            .unwrap();
        let (status, _) = call(app.clone(), req).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }
    let text = metrics_text(app).await;
    assert!(!text.contains("MADEUP"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("ragd_http_requests_total{")
            && l.contains(r#"method="other""#)
            && l.ends_with(" 50")),
        "{text}"
    );
}

/// Issue 10, finding 10: a client's request id went unquoted into text
/// logs, where `a path=/admin/keys` forged a field.
#[tokio::test]
async fn unsafe_request_ids_are_replaced_and_safe_ones_kept() {
    let app = loading_app();
    for (given, kept) in [
        ("trace-42.a_b:c", true),
        ("x path=/admin/keys", false),
        ("\"quoted\"", false),
        (&*"a".repeat(200), false),
    ] {
        let req = Request::get("/health")
            .header("x-request-id", given)
            .body(Body::empty())
            .unwrap();
        let (_, headers, _) = call_with_headers(app.clone(), req).await;
        let id = headers["x-request-id"].to_str().unwrap();
        assert_eq!(id == given, kept, "{given:?} -> {id:?}");
        if !kept {
            assert!(uuid_like(id), "{id}");
        }
    }
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// Issue 10, finding 10: a path parameter that does not decode answered
/// `text/plain`, not the OpenAI error JSON.
#[tokio::test]
async fn a_bad_path_parameter_is_a_json_400() {
    for uri in [
        "/v1/collections/%FF",
        "/v1/collections/ok/documents/%C3%28",
        "/v1/models/%FF%FE",
    ] {
        let req = Request::get(uri).body(Body::empty()).unwrap();
        let (status, body) = call(loading_app(), req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{uri}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("path"),
            "{body}"
        );
    }
}

/// Issue 10, finding 10: failed authentication was not throttled (2,000
/// wrong keys in 2 s). Past the budget, the address is shut out: even the
/// right key waits, so guessing at speed learns nothing.
#[tokio::test]
async fn failed_authentication_is_throttled_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let budget = std::num::NonZeroU32::new(5).unwrap();
    let (app, [acme, _]) = keyed_app_with(dir.path(), None, Some(budget));
    for i in 0..5 {
        let (status, body) = call(app.clone(), models_request(&format!("rk-guess-{i}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let (status, headers, body) = call_with_headers(app.clone(), models_request("rk-guess-5")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "too_many_failed_authentications");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "Retry-After {retry}");
    let (status, body) = call(app.clone(), models_request(&acme)).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "right key, same address: {body}"
    );
    // The admin routes share the budget.
    let req = Request::get("/admin/keys")
        .header("authorization", "Bearer router-admin-key-0123")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(app, req).await.0, StatusCode::TOO_MANY_REQUESTS);
}
