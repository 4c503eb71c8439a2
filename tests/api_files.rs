//! `POST /v1/collections/{name}/files` with the real embedder: a PDF, an
//! HTML page, a Markdown file and a DOCX (tests/fixtures/formats, made by
//! its make.py) go in by multipart upload, a damaged and an unsupported
//! file are reported by name while the rest go in, and a search for a
//! sentence of each file finds that file first.

use std::path::PathBuf;

use ragd_suite::{assert_openai_error, post_json, start_on_own_thread};
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

const FILES: [(&str, &str); 4] = [
    (
        "lighthouse.pdf",
        "The lighthouse keeper feeds the gulls every Thursday at dawn.",
    ),
    (
        "museum.html",
        "The museum opens its glass gallery at nine in the morning.",
    ),
    (
        "garden.md",
        "Tomatoes in the greenhouse need water twice a day in July.",
    ),
    (
        "handbook.docx",
        "New employees receive a brass key to the archive room.",
    ),
];

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/formats")
            .join(name),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn uploaded_files_of_every_format_are_searchable() {
    let (addr, _server) = start_on_own_thread(|c| {
        c.models.guards = vec![];
        c.models.generator = "none".into();
    });
    let base = format!("http://{addr}");
    assert!(post_json(&base, "/v1/collections", &json!({"name": "kb"}))
        .await
        .status()
        .is_success());

    let mut form = Form::new();
    for (name, _) in FILES {
        form = form.part("file", Part::bytes(fixture(name)).file_name(name));
    }
    form = form
        .part(
            "file",
            Part::bytes(b"%PDF-1.4 not really".to_vec()).file_name("broken.pdf"),
        )
        .part("file", Part::bytes(b"MZ".to_vec()).file_name("tool.exe"));
    let url = format!("{base}/v1/collections/kb/files");
    let resp = reqwest::Client::new()
        .post(&url)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (body["documents"].as_u64(), body["object"].as_str()),
        (Some(4), Some("collection.files")),
        "{body}"
    );
    let files = body["files"].as_array().unwrap();
    assert_eq!(files.len(), 6, "{body}");
    for f in files {
        let failed = ["broken.pdf", "tool.exe"].contains(&f["name"].as_str().unwrap());
        assert_eq!(f["error"].is_string(), failed, "{f}");
        assert_eq!(f["documents"], if failed { 0 } else { 1 }, "{f}");
    }

    for (name, sentence) in FILES {
        let found: Value = post_json(
            &base,
            "/v1/collections/kb/search",
            &json!({"query": sentence, "top_k": 1}),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(found["data"][0]["document_id"], name, "{sentence}: {found}");
        assert!(
            found["data"][0]["text"].as_str().unwrap().contains(sentence),
            "{found}"
        );
    }

    // Bad uploads: no file, a field of another name, a missing collection.
    let client = reqwest::Client::new();
    let send = |req: reqwest::RequestBuilder| async move {
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (status, body) = send(client.post(&url).multipart(Form::new().text("note", "hi"))).await;
    assert_eq!(status, 400, "{body}");
    assert_openai_error("a field of another name", status, &body);
    let empty = client
        .post(&url)
        .header("content-type", "multipart/form-data; boundary=x")
        .body("--x--\r\n");
    let (status, body) = send(empty).await;
    assert_eq!(status, 400, "{body}");
    assert_openai_error("no file", status, &body);
    let form = Form::new().part("file", Part::bytes(fixture("garden.md")).file_name("garden.md"));
    let (status, body) = send(
        client
            .post(format!("{base}/v1/collections/nope/files"))
            .multipart(form),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_openai_error("a missing collection", status, &body);
}
