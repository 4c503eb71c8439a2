//! API keys and tenants: 401s in OpenAI's shape, the admin endpoints, the
//! keys file, and single-user mode (`--no-auth`) only on loopback.

use std::path::Path;

use ragd_server::config::ServeConfig;
use ragd_server::serve;
use ragd_suite::{models_dir, no_models, start_on_own_thread, test_config};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

const ADMIN_KEY: &str = "test-admin-key-0123456789";
/// A keyed server (no models) whose keys file and admin key live in `dir`.
fn keyed(dir: &Path) -> impl Fn(&mut ServeConfig) + Clone {
    let admin = dir.join("admin.key");
    std::fs::write(&admin, format!("{ADMIN_KEY}\n")).unwrap();
    let dir = dir.to_path_buf();
    move |c: &mut ServeConfig| {
        no_models(c);
        c.auth.no_auth = false;
        c.auth.admin_key_file = Some(admin.clone());
        c.auth.keys_file = Some(dir.join("keys.toml"));
        c.data_dir = Some(dir.join("data"));
    }
}

/// Sends `req`, returns status and JSON body.
async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, body)
}

fn assert_invalid_key(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let err = &body["error"];
    assert_eq!(err["type"], "invalid_request_error", "{body}");
    assert_eq!(err["code"], "invalid_api_key", "{body}");
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(err.get("param").is_some(), "{body}");
}

async fn create_key(c: &Client, base: &str, tenant: &str) -> (String, String) {
    let (status, body) = send(
        c.post(format!("{base}/admin/keys"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"tenant": tenant, "name": format!("{tenant} key")})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tenant"], tenant);
    let key = body["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("rk-") && key.len() > 40, "{key}");
    assert!(key.starts_with(body["prefix"].as_str().unwrap()));
    (body["id"].as_str().unwrap().to_string(), key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_map_to_tenants_and_only_the_admin_manages_them() {
    let dir = tempfile::tempdir().unwrap();
    let flags = keyed(dir.path());
    let (addr, server) = start_on_own_thread(flags.clone());
    let base = format!("http://{addr}");
    let c = Client::new();

    // Open routes.
    for path in ["/health", "/ready", "/metrics"] {
        let status = c.get(format!("{base}{path}")).send().await.unwrap().status();
        assert_eq!(status, 200, "{path} must not need a key");
    }

    // No key, a malformed header, an unknown key: 401 in OpenAI's shape.
    let resp = c.get(format!("{base}/v1/models")).send().await.unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let (status, body) = send(c.get(format!("{base}/v1/models"))).await;
    assert_invalid_key(status, &body);
    let (status, body) = send(
        c.get(format!("{base}/v1/models"))
            .header("authorization", "Basic eDp5"),
    )
    .await;
    assert_invalid_key(status, &body);
    let (status, body) = send(
        c.get(format!("{base}/v1/collections"))
            .bearer_auth("rk-not-a-real-key"),
    )
    .await;
    assert_invalid_key(status, &body);
    let (status, body) = send(
        c.post(format!("{base}/v1/embeddings"))
            .bearer_auth("rk-not-a-real-key")
            .json(&json!({"model": "m", "input": "x"})),
    )
    .await;
    assert_invalid_key(status, &body);

    // Admin endpoints take the admin key only.
    let (status, body) = send(c.get(format!("{base}/admin/keys"))).await;
    assert_invalid_key(status, &body);
    let (status, body) = send(
        c.post(format!("{base}/admin/keys"))
            .bearer_auth("wrong-admin-key-0123456789")
            .json(&json!({"tenant": "acme"})),
    )
    .await;
    assert_invalid_key(status, &body);

    let (acme_id, acme) = create_key(&c, &base, "acme").await;
    let (_, globex) = create_key(&c, &base, "globex").await;
    assert_ne!(acme, globex);

    // A tenant key is not an admin key.
    let (status, body) = send(c.get(format!("{base}/admin/keys")).bearer_auth(&acme)).await;
    assert_invalid_key(status, &body);

    // Tenant keys open /v1.
    for key in [&acme, &globex] {
        let (status, body) = send(c.get(format!("{base}/v1/models")).bearer_auth(key)).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = send(c.get(format!("{base}/v1/collections")).bearer_auth(key)).await;
        assert_eq!((status, &body["data"]), (StatusCode::OK, &json!([])), "{body}");
    }

    // Listing never shows a key; the file holds only hashes.
    let resp = c
        .get(format!("{base}/admin/keys"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(!text.contains(&acme) && !text.contains(&globex), "{text}");
    let listed: Value = serde_json::from_str(&text).unwrap();
    let tenants: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, ["acme", "globex"]);
    assert!(listed["data"][0].get("key").is_none());
    let file = std::fs::read_to_string(dir.path().join("keys.toml")).unwrap();
    assert!(!file.contains(&acme) && !file.contains(&globex), "{file}");
    assert!(file.contains("sha256") && file.contains("acme"), "{file}");

    // Bad admin requests.
    for (body, want) in [
        (json!({"tenant": "a/b"}), 400),
        (json!({"tenant": ""}), 400),
        (json!({"tenant": "x".repeat(65)}), 400),
        (json!({}), 422),
        (json!({"tenant": "acme", "bogus": 1}), 422),
    ] {
        let (status, err) = send(
            c.post(format!("{base}/admin/keys"))
                .bearer_auth(ADMIN_KEY)
                .json(&body),
        )
        .await;
        assert_eq!(status.as_u16(), want, "{body}: {err}");
        assert!(err["error"]["message"].is_string(), "{err}");
    }

    // Revoking a key shuts it out at once.
    let (status, body) = send(
        c.delete(format!("{base}/admin/keys/{acme_id}"))
            .bearer_auth(ADMIN_KEY),
    )
    .await;
    assert_eq!(
        (status, &body["deleted"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    let (status, body) = send(c.get(format!("{base}/v1/models")).bearer_auth(&acme)).await;
    assert_invalid_key(status, &body);
    let (status, _) = send(
        c.delete(format!("{base}/admin/keys/{acme_id}"))
            .bearer_auth(ADMIN_KEY),
    )
    .await;
    assert_eq!(status, 404);

    // Keys survive a restart; the revoked one stays revoked.
    server.stop();
    let (addr, _server) = start_on_own_thread(flags);
    let base = format!("http://{addr}");
    let (status, _) = send(c.get(format!("{base}/v1/models")).bearer_auth(&globex)).await;
    assert_eq!(status, 200);
    let (status, body) = send(c.get(format!("{base}/v1/models")).bearer_auth(&acme)).await;
    assert_invalid_key(status, &body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_auth_is_single_user_and_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = |configure: &dyn Fn(&mut ServeConfig)| {
        let mut c = test_config(models_dir());
        no_models(&mut c);
        c.data_dir = Some(dir.path().to_path_buf());
        configure(&mut c);
        c
    };
    let public = config(&|c| c.host = "0.0.0.0".parse().unwrap());
    let err = match serve::start(public).await {
        Ok(_) => panic!("--no-auth must refuse 0.0.0.0"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("--no-auth") && err.contains("loopback") && err.contains("0.0.0.0"),
        "{err}"
    );

    let admin = dir.path().join("admin.key");
    std::fs::write(&admin, ADMIN_KEY).unwrap();
    let with_keys = config(&|c| c.auth.admin_key_file = Some(admin.clone()));
    assert!(
        serve::start(with_keys).await.is_err(),
        "--no-auth with keys is a contradiction"
    );

    // On loopback, no key is needed (any is ignored), and there is no key
    // management.
    let (addr, _server) = start_on_own_thread(no_models);
    let base = format!("http://{addr}");
    let c = Client::new();
    let (status, body) = send(c.get(format!("{base}/v1/collections"))).await;
    assert_eq!((status, &body["data"]), (StatusCode::OK, &json!([])), "{body}");
    let (status, _) = send(c.get(format!("{base}/v1/models")).bearer_auth("anything")).await;
    assert_eq!(status, 200);
    let (status, _) = send(c.get(format!("{base}/admin/keys")).bearer_auth(ADMIN_KEY)).await;
    assert_eq!(status, 404);
}
