//! The playground's routes without sockets or models: the page at `/`
//! and `/playground` with its policy headers, the embedded files, 304s
//! for a known version, JSON errors for unknown files, and nothing at all
//! with `--no-ui`.

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use ragd_server::auth::{AdminKey, Auth};
use ragd_server::state::{ServerState, StateConfig};
use tower::ServiceExt;

fn app(ui: bool, auth: Auth) -> axum::Router {
    let config = StateConfig {
        auth,
        ..StateConfig::default()
    };
    let state = ServerState::build(config, prometheus::Registry::new()).unwrap();
    ragd_server::app::router(state, 1024, ui)
}

async fn send(app: axum::Router, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let resp = app.oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, headers, body)
}

async fn get(app: axum::Router, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

fn openai_error(status: StatusCode, body: &[u8]) -> serde_json::Value {
    assert!(status.is_client_error(), "{status}");
    let v: serde_json::Value = serde_json::from_slice(body).expect("a JSON error");
    assert!(
        v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    v
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy() {
    for path in ["/", "/playground"] {
        let (status, headers, body) = get(app(true, Auth::Disabled), path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert_eq!(csp, ragd_server::routes::ui::CSP);
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let html = String::from_utf8(body).unwrap();
        assert!(
            html.contains("data-auth=\"none\""),
            "single-user mode hides the key field"
        );
        // Only files from its own origin, no inline script or style.
        for needle in ["http://", "https://", "<style", "style=", "onclick", "<script>"] {
            assert!(!html.contains(needle), "the page holds {needle:?}");
        }
    }
}

#[tokio::test]
async fn with_api_keys_the_page_keeps_its_key_field() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ragd_server::auth::keys::KeyRing::load(&dir.path().join("keys.toml")).unwrap();
    let auth = Auth::Keys {
        keys: std::sync::Arc::new(keys),
        admin: Some(AdminKey::new("admin-key-for-the-ui-test")),
    };
    let (status, _, body) = get(app(true, auth), "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8(body).unwrap().contains("data-auth=\"keys\""));
}

#[tokio::test]
async fn embedded_files_have_their_types_and_versions() {
    let (status, headers, body) = get(app(true, Auth::Disabled), "/ui/js/main.js").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    assert!(String::from_utf8(body).unwrap().contains("import "));
    let (_, css, _) = get(app(true, Auth::Disabled), "/ui/style.css").await;
    assert_eq!(css["content-type"], "text/css; charset=utf-8");
    // The same version again: 304 without a body.
    let etag = headers["etag"].clone();
    let req = Request::get("/ui/js/main.js")
        .header("if-none-match", etag)
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(app(true, Auth::Disabled), req).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    let req = Request::get("/ui/js/main.js")
        .header("if-none-match", "\"old\"")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(app(true, Auth::Disabled), req).await.0, StatusCode::OK);
}

#[tokio::test]
async fn unknown_files_and_methods_get_openai_errors() {
    for path in [
        "/ui/nope.js",
        "/ui/../Cargo.toml",
        "/ui/js/%2e%2e/index.html",
        "/ui/",
    ] {
        let (status, _, body) = get(app(true, Auth::Disabled), path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        openai_error(status, &body);
    }
    let (status, _, body) = send(
        app(true, Auth::Disabled),
        Request::post("/").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    openai_error(status, &body);
}

#[tokio::test]
async fn no_ui_serves_no_page() {
    for path in ["/", "/playground", "/ui/js/main.js"] {
        let (status, _, body) = get(app(false, Auth::Disabled), path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(openai_error(status, &body)["error"]["code"], "not_found");
    }
    // The API is unchanged.
    assert_eq!(get(app(false, Auth::Disabled), "/health").await.0, StatusCode::OK);
}
