//! Malformed requests get a 4xx with OpenAI's error JSON, and the server
//! keeps serving.

use ragd_suite::start_on_own_thread;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

struct Case {
    name: &'static str,
    method: reqwest::Method,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
}

fn post_json(name: &'static str, path: &'static str, body: Value, status: u16) -> Case {
    Case {
        name,
        method: reqwest::Method::POST,
        path,
        content_type: Some("application/json"),
        body: serde_json::to_vec(&body).unwrap(),
        status,
    }
}

fn post_raw(name: &'static str, path: &'static str, body: &[u8], status: u16) -> Case {
    Case {
        name,
        method: reqwest::Method::POST,
        path,
        content_type: Some("application/json"),
        body: body.to_vec(),
        status,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_openai_errors() {
    let (addr, _stop) = start_on_own_thread(|c| {
        c.max_body_bytes = 65536;
        c.request_limits.max_inputs = 16;
        c.request_limits.max_input_bytes = 20000;
    });
    let base = format!("http://{addr}");
    let emb = "/v1/embeddings";
    let m = "all-minilm-l6-v2";
    let cases = vec![
        post_raw(
            "truncated json",
            emb,
            br#"{"model": "all-minilm-l6-v2", "input": ["a""#,
            400,
        ),
        post_raw("not json at all", emb, b"hello there", 400),
        post_raw(
            "invalid utf-8",
            emb,
            b"{\"model\": \"all-minilm-l6-v2\", \"input\": \"\xff\xfe\"}",
            400,
        ),
        post_json(
            "input of the wrong type",
            emb,
            json!({"model": m, "input": {"text": "a"}}),
            400,
        ),
        post_json(
            "model of the wrong type",
            emb,
            json!({"model": 42, "input": "a"}),
            422,
        ),
        post_json("missing model", emb, json!({"input": "a"}), 422),
        post_json("missing input", emb, json!({"model": m}), 400),
        post_json("empty string", emb, json!({"model": m, "input": ""}), 400),
        post_json("empty array", emb, json!({"model": m, "input": []}), 400),
        post_json(
            "negative token id",
            emb,
            json!({"model": m, "input": [1, -5]}),
            400,
        ),
        post_json(
            "token id outside the vocabulary",
            emb,
            json!({"model": m, "input": [999999]}),
            400,
        ),
        post_json(
            "too many inputs",
            emb,
            json!({"model": m, "input": vec!["a"; 17]}),
            400,
        ),
        post_json(
            "unknown model",
            emb,
            json!({"model": "text-embedding-3-large", "input": "a"}),
            404,
        ),
        post_json(
            "wrong dimensions",
            emb,
            json!({"model": m, "input": "a", "dimensions": 1024}),
            400,
        ),
        post_json(
            "bad encoding format",
            emb,
            json!({"model": m, "input": "a", "encoding_format": "int8"}),
            422,
        ),
        post_json(
            "unknown field",
            emb,
            json!({"model": m, "input": "a", "bogus": true}),
            422,
        ),
        post_json(
            "oversize input text",
            "/v1/moderations",
            json!({"input": " ".repeat(30_000)}),
            400,
        ),
        post_json(
            "oversize body",
            emb,
            json!({"model": m, "input": "x".repeat(70_000)}),
            413,
        ),
        post_json(
            "moderation of token ids",
            "/v1/moderations",
            json!({"input": [1, 2, 3]}),
            400,
        ),
        post_json(
            "moderation of a number",
            "/v1/moderations",
            json!({"input": 7}),
            400,
        ),
        post_json(
            "moderation by an unknown model",
            "/v1/moderations",
            json!({"input": "a", "model": "omni-moderation-latest"}),
            404,
        ),
        Case {
            name: "missing content type",
            method: reqwest::Method::POST,
            path: emb,
            content_type: None,
            body: br#"{"model": "all-minilm-l6-v2", "input": "a"}"#.to_vec(),
            status: 415,
        },
        Case {
            name: "unknown route",
            method: reqwest::Method::GET,
            path: "/v1/nothing-here",
            content_type: None,
            body: vec![],
            status: 404,
        },
        Case {
            name: "wrong method",
            method: reqwest::Method::GET,
            path: emb,
            content_type: None,
            body: vec![],
            status: 405,
        },
        Case {
            name: "unknown model card",
            method: reqwest::Method::GET,
            path: "/v1/models/gpt-4",
            content_type: None,
            body: vec![],
            status: 404,
        },
    ];
    assert!(cases.len() >= 10);
    let client = reqwest::Client::new();
    for case in &cases {
        let mut req = client
            .request(case.method.clone(), format!("{base}{}", case.path))
            .body(case.body.clone());
        if let Some(ct) = case.content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, case.status, "{}: {text}", case.name);
        let body: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{}: not JSON: {text}", case.name));
        let err = &body["error"];
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}: {body}",
            case.name
        );
        assert!(err["type"].is_string(), "{}: {body}", case.name);
        assert!(
            err.get("param").is_some() && err.get("code").is_some(),
            "{}: {body}",
            case.name
        );
    }
    // Still serving after all of that.
    let ok = client
        .post(format!("{base}{emb}"))
        .json(&json!({"model": m, "input": "still alive?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().contains_key("x-request-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_or_generated() {
    let (addr, _stop) = start_on_own_thread(|c| {
        c.models.embedder = "none".into();
        c.models.guards = vec![];
    });
    let client = reqwest::Client::new();
    let given = client
        .get(format!("http://{addr}/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "abc-123");
    let generated = client.get(format!("http://{addr}/health")).send().await.unwrap();
    assert_eq!(generated.headers()["x-request-id"].len(), 36, "a uuid");
}
