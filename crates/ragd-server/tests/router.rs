//! The router without sockets or models (`tower::ServiceExt::oneshot`):
//! readiness while loading, and errors that need no model.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ragd_server::state::{Limits, ServerState};
use tower::ServiceExt;

fn loading_app() -> axum::Router {
    let limits = Limits {
        max_inputs: 16,
        max_input_bytes: 1024,
        guard_threshold: 0.5,
    };
    let state = ServerState::new(vec!["embedder"], limits, prometheus::Registry::new()).unwrap();
    ragd_server::app::router(state, 1024)
}

async fn call(app: axum::Router, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
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

/// A keyed app (no models) with one key for tenant `acme`.
fn keyed_app(dir: &std::path::Path) -> (axum::Router, String) {
    use ragd_server::auth::keys::KeyRing;
    use ragd_server::auth::{AdminKey, Auth};
    use ragd_server::state::{CollectionLimits, Services};

    let keys = KeyRing::load(&dir.join("keys.toml")).unwrap();
    let (_, key) = keys.create("acme", None).unwrap();
    let services = Services {
        auth: Auth::Keys {
            keys: std::sync::Arc::new(keys),
            admin: Some(AdminKey::new("router-admin-key-0123")),
        },
        store: None,
        collection_limits: CollectionLimits::default(),
        rag_template: std::sync::Arc::new(
            ragd_server::rag::RagTemplate::new(ragd_server::rag::DEFAULT_TEMPLATE).unwrap(),
        ),
    };
    let limits = Limits {
        max_inputs: 16,
        max_input_bytes: 1024,
        guard_threshold: 0.5,
    };
    let state = ServerState::with(vec![], limits, prometheus::Registry::new(), services).unwrap();
    (ragd_server::app::router(state, 1024), key)
}

#[tokio::test]
async fn v1_needs_a_known_key_and_health_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (app, key) = keyed_app(dir.path());
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
