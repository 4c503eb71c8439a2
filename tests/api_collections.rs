//! The collections API end to end, on the real all-MiniLM-L6-v2: ingest,
//! search, delete, tenant isolation, validation, metrics and restarts.
//! Every test runs on both stores (`memory::...` and `postgres::...`).

use ragd_server::config::ServeConfig;
use ragd_suite::{assert_openai_error, get_text, metric_value, start_on_own_thread, use_store, StoreKind};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

const ADMIN_KEY: &str = "collections-admin-key-0123456789";
/// Only the embedder: collections need no guard or generator.
fn embedder_only(c: &mut ServeConfig) {
    c.models.guards = vec![];
    c.models.generator = "none".into();
}

/// A client bound to one server and, optionally, one tenant's key.
struct Api {
    c: Client,
    base: String,
    key: Option<String>,
}

impl Api {
    fn new(base: &str, key: Option<&str>) -> Self {
        Self {
            c: Client::new(),
            base: base.to_string(),
            key: key.map(str::to_string),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.c.request(method, format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let body =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON ({status}): {text}"));
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// `POST`, asserting 200.
    async fn ok(&self, path: &str, body: Value) -> Value {
        let (status, resp) = self.post(path, body).await;
        assert_eq!(status, 200, "{path}: {resp}");
        resp
    }

    /// Document ids of a search's hits, best first.
    async fn search(&self, collection: &str, body: Value) -> Vec<String> {
        let resp = self
            .ok(&format!("/v1/collections/{collection}/search"), body)
            .await;
        resp["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["document_id"].as_str().unwrap().to_string())
            .collect()
    }
}

fn docs() -> Value {
    json!({"documents": [
        {"id": "cats", "text": "Cats are small domesticated felines. They purr, sleep most of the day and hunt mice.", "metadata": {"topic": "pets"}},
        {"id": "rust", "text": "Rust is a systems programming language whose borrow checker guarantees memory safety without a garbage collector.", "metadata": {"topic": "code"}},
        {"id": "bread", "text": "To bake bread, mix flour, water, salt and yeast, knead the dough, let it rise, then bake it in a hot oven.", "metadata": {"topic": "food"}},
        {"id": "paris", "text": "Paris is the capital and largest city of France, on the river Seine.", "metadata": {"topic": "geography"}}
    ]})
}

/// Asserts status `want` and OpenAI's error shape.
fn assert_error(status: StatusCode, body: &Value, want: u16, what: &str) {
    assert_eq!(status.as_u16(), want, "{what}: {body}");
    assert_openai_error(what, status, body);
}

ragd_suite::on_both_stores!(
    tenants_ingest_search_and_never_see_each_other,
    bad_bodies_get_4xx_openai_errors,
    documents_survive_a_restart,
    documents_list_a_page_at_a_time,
);

async fn tenants_ingest_search_and_never_see_each_other(store: StoreKind) {
    let pg = store.start();
    let dir = tempfile::tempdir().unwrap();
    let admin_file = dir.path().join("admin.key");
    std::fs::write(&admin_file, ADMIN_KEY).unwrap();
    let keys_file = dir.path().join("keys.json");
    let (addr, _server) = start_on_own_thread(|c| {
        embedder_only(c);
        use_store(c, pg.as_ref());
        c.auth.no_auth = false;
        c.auth.admin_key_file = Some(admin_file);
        c.auth.keys_file = Some(keys_file);
    });
    let base = format!("http://{addr}");

    let admin = Api::new(&base, Some(ADMIN_KEY));
    let key_a = admin.ok("/admin/keys", json!({"tenant": "acme"})).await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let key_b = admin.ok("/admin/keys", json!({"tenant": "globex"})).await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let a = Api::new(&base, Some(&key_a));
    let b = Api::new(&base, Some(&key_b));
    let anonymous = Api::new(&base, None);
    let (status, _) = anonymous.get("/v1/collections").await;
    assert_eq!(status, 401);

    // Tenant A builds "docs".
    let created = a
        .ok(
            "/v1/collections",
            json!({"name": "docs", "metadata": {"team": "search"}}),
        )
        .await;
    assert_eq!(created["name"], "docs");
    assert_eq!(created["dim"], 384);
    assert_eq!(created["embedding_model"], "all-minilm-l6-v2");
    assert_eq!(created["metadata"]["team"], "search");
    assert_eq!(created["documents"], 0);
    let (status, body) = a.post("/v1/collections", json!({"name": "docs"})).await;
    assert_error(status, &body, 409, "duplicate collection");

    let out = a.ok("/v1/collections/docs/documents", docs()).await;
    assert_eq!(
        (out["documents"].as_u64(), out["replaced"].as_u64()),
        (Some(4), Some(0)),
        "{out}"
    );
    assert!(out["chunks"].as_u64().unwrap() >= 4, "{out}");
    assert!(out["usage"]["prompt_tokens"].as_u64().unwrap() > 40, "{out}");

    // The relevant document comes first.
    for (query, want) in [
        ("How do I make a loaf of bread at home?", "bread"),
        ("What is the capital of France?", "paris"),
        ("memory safety in a compiled language", "rust"),
        ("my kitten sleeps all day", "cats"),
    ] {
        let ids = a.search("docs", json!({"query": query})).await;
        assert_eq!(
            ids.len(),
            4,
            "top_k defaults to 4, and there are 4 chunks: {ids:?}"
        );
        assert_eq!(ids[0], want, "{query}: {ids:?}");
    }
    let resp = a
        .ok(
            "/v1/collections/docs/search",
            json!({"query": "baking bread", "top_k": 2, "mode": "dense"}),
        )
        .await;
    let hits = resp["data"].as_array().unwrap();
    assert_eq!(hits.len(), 2);
    let best = &hits[0];
    assert_eq!(best["document_id"], "bread");
    assert_eq!(best["chunk_index"], 0);
    assert!(best["chunk_id"].is_u64());
    assert!(best["text"].as_str().unwrap().contains("flour"));
    assert_eq!(best["metadata"]["topic"], "food");
    let (s0, s1) = (
        best["score"].as_f64().unwrap(),
        hits[1]["score"].as_f64().unwrap(),
    );
    assert!(s0 > s1 && s0 <= 1.0 + 1e-5 && s0 > 0.3, "{resp}");
    assert_eq!(resp["model"], "all-minilm-l6-v2");
    // Filters by metadata equality.
    let ids = a
        .search(
            "docs",
            json!({"query": "baking bread", "filter": {"topic": "pets"}}),
        )
        .await;
    assert_eq!(ids, ["cats"]);

    // Tenant B: A's collection is a 404 exactly like a missing one.
    let (status, missing) = b.get("/v1/collections/nothing").await;
    assert_error(status, &missing, 404, "missing collection");
    let like_missing = |body: &Value| {
        let expected = serde_json::to_string(&missing)
            .unwrap()
            .replace("nothing", "docs");
        assert_eq!(serde_json::to_string(body).unwrap(), expected);
    };
    let (status, body) = b.get("/v1/collections/docs").await;
    assert_eq!(status, 404);
    like_missing(&body);
    let (status, body) = b
        .post("/v1/collections/docs/search", json!({"query": "bread"}))
        .await;
    assert_eq!(status, 404);
    like_missing(&body);
    let (status, body) = b.post("/v1/collections/docs/documents", docs()).await;
    assert_eq!(status, 404);
    like_missing(&body);
    let (status, body) = b.delete("/v1/collections/docs/documents/bread").await;
    assert_eq!(status, 404);
    like_missing(&body);
    let (status, body) = b.get("/v1/collections/docs/documents/bread").await;
    assert_eq!(status, 404);
    like_missing(&body);
    let (status, body) = b.get("/v1/collections/docs/documents").await;
    assert_eq!(status, 404, "tenant B cannot list tenant A's documents");
    like_missing(&body);
    let (status, body) = b.delete("/v1/collections/docs").await;
    assert_eq!(status, 404);
    like_missing(&body);
    let (status, body) = b.get("/v1/collections").await;
    assert_eq!((status, &body["data"]), (StatusCode::OK, &json!([])), "{body}");

    // B's own "docs" is independent.
    b.ok("/v1/collections", json!({"name": "docs"})).await;
    b.ok(
        "/v1/collections/docs/documents",
        json!({"documents": [{"id": "volcano", "text": "Volcanoes erupt molten lava and ash from the earth's mantle."}]}),
    )
    .await;
    assert_eq!(b.search("docs", json!({"query": "bread"})).await, ["volcano"]);
    assert_eq!(a.search("docs", json!({"query": "volcano lava"})).await.len(), 4);
    assert!(!a
        .search("docs", json!({"query": "volcano lava"}))
        .await
        .contains(&"volcano".to_string()));

    // A's document reads back with its metadata and chunk text.
    let (status, body) = a.get("/v1/collections/docs/documents/bread").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["object"], "document");
    assert_eq!(body["id"], "bread");
    assert_eq!(body["metadata"]["topic"], "food");
    let chunks = body["chunks"].as_array().unwrap();
    assert!(
        !chunks.is_empty() && chunks[0].as_str().unwrap().to_lowercase().contains("bread"),
        "{body}"
    );

    // Deleting a document removes it from the results.
    let (status, body) = a.delete("/v1/collections/docs/documents/bread").await;
    assert_eq!(
        (status, &body["deleted"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    let ids = a.search("docs", json!({"query": "How do I bake bread?"})).await;
    assert_eq!(ids.len(), 3);
    assert!(!ids.contains(&"bread".to_string()), "{ids:?}");
    let (status, body) = a.delete("/v1/collections/docs/documents/bread").await;
    assert_error(status, &body, 404, "deleted twice");
    let (status, body) = a.get("/v1/collections/docs/documents/bread").await;
    assert_error(status, &body, 404, "deleted document");

    // Re-upserting an id replaces it.
    let out = a
        .ok(
            "/v1/collections/docs/documents",
            json!({"documents": [{"id": "cats", "text": "Dogs bark at the mailman and fetch sticks."}]}),
        )
        .await;
    assert_eq!(out["replaced"], 1);
    assert_eq!(
        a.search("docs", json!({"query": "a dog fetching a stick", "top_k": 1}))
            .await,
        ["cats"]
    );
    let (_, got) = a.get("/v1/collections/docs").await;
    assert_eq!(
        (got["documents"].as_u64(), got["chunks"].as_u64()),
        (Some(3), Some(3)),
        "{got}"
    );
    let (_, listed) = a.get("/v1/collections").await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed["data"][0]["name"], "docs");

    // Metrics: store totals, no tenant anywhere.
    let metrics = get_text(&base, "/metrics").await;
    for name in [
        "ragd_search_latency_seconds_bucket",
        "ragd_retrieval_top_score_bucket",
        "ragd_ingested_documents_total",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    assert_eq!(
        metric_value(&metrics, "ragd_documents", ""),
        Some(4.0),
        "3 of A, 1 of B"
    );
    assert_eq!(metric_value(&metrics, "ragd_chunks", ""), Some(4.0));
    assert_eq!(
        metric_value(&metrics, "ragd_ingested_documents_total", ""),
        Some(6.0)
    );
    assert!(metric_value(&metrics, "ragd_search_latency_seconds_count", "").unwrap() >= 10.0);
    assert!(!metrics.contains("acme") && !metrics.contains("globex"));

    // Deleting A's collection leaves B's alone.
    let (status, body) = a.delete("/v1/collections/docs").await;
    assert_eq!(
        (status, &body["deleted"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    let (status, _) = a.get("/v1/collections/docs").await;
    assert_eq!(status, 404);
    assert_eq!(b.search("docs", json!({"query": "lava"})).await, ["volcano"]);
}

async fn bad_bodies_get_4xx_openai_errors(store: StoreKind) {
    let pg = store.start();
    let (addr, _server) = start_on_own_thread(|c| {
        embedder_only(c);
        use_store(c, pg.as_ref());
        c.collection_limits.max_documents = 3;
        c.collection_limits.max_document_bytes = 1000;
        c.collection_limits.max_top_k = 50;
    });
    let api = Api::new(&format!("http://{addr}"), None);
    api.ok("/v1/collections", json!({"name": "docs"})).await;
    let one = |id: &str, text: &str| json!({"documents": [{"id": id, "text": text}]});
    let cases: Vec<(&str, &str, Value, u16)> = vec![
        ("slash in name", "/v1/collections", json!({"name": "a/b"}), 400),
        ("dot in name", "/v1/collections", json!({"name": "a.b"}), 400),
        ("empty name", "/v1/collections", json!({"name": ""}), 400),
        (
            "long name",
            "/v1/collections",
            json!({"name": "x".repeat(65)}),
            400,
        ),
        ("missing name", "/v1/collections", json!({}), 422),
        (
            "name of the wrong type",
            "/v1/collections",
            json!({"name": 3}),
            422,
        ),
        (
            "unknown field",
            "/v1/collections",
            json!({"name": "c", "dim": 8}),
            422,
        ),
        (
            "zero chunk",
            "/v1/collections",
            json!({"name": "c", "chunk_tokens": 0}),
            400,
        ),
        (
            "chunk over the window",
            "/v1/collections",
            json!({"name": "c", "chunk_tokens": 5000}),
            400,
        ),
        (
            "overlap too big",
            "/v1/collections",
            json!({"name": "c", "chunk_tokens": 64, "chunk_overlap": 64}),
            400,
        ),
        (
            "metadata not an object",
            "/v1/collections",
            json!({"name": "c", "metadata": [1]}),
            422,
        ),
        (
            "no documents",
            "/v1/collections/docs/documents",
            json!({"documents": []}),
            400,
        ),
        (
            "documents missing",
            "/v1/collections/docs/documents",
            json!({}),
            422,
        ),
        (
            "too many documents",
            "/v1/collections/docs/documents",
            json!({"documents": (0..4).map(|i| json!({"id": format!("d{i}"), "text": "x"})).collect::<Vec<_>>()}),
            400,
        ),
        (
            "text too long",
            "/v1/collections/docs/documents",
            one("d", &"word ".repeat(300)),
            400,
        ),
        (
            "empty text",
            "/v1/collections/docs/documents",
            one("d", "   "),
            400,
        ),
        ("empty id", "/v1/collections/docs/documents", one("", "text"), 400),
        (
            "duplicate ids",
            "/v1/collections/docs/documents",
            json!({"documents": [{"id": "d", "text": "a"}, {"id": "d", "text": "b"}]}),
            400,
        ),
        (
            "document without text",
            "/v1/collections/docs/documents",
            json!({"documents": [{"id": "d"}]}),
            422,
        ),
        (
            "document metadata not an object",
            "/v1/collections/docs/documents",
            json!({"documents": [{"id": "d", "text": "t", "metadata": "x"}]}),
            422,
        ),
        (
            "upsert into a missing collection",
            "/v1/collections/nope/documents",
            one("d", "t"),
            404,
        ),
        (
            "top_k 0",
            "/v1/collections/docs/search",
            json!({"query": "q", "top_k": 0}),
            400,
        ),
        (
            "top_k over the max",
            "/v1/collections/docs/search",
            json!({"query": "q", "top_k": 51}),
            400,
        ),
        (
            "negative top_k",
            "/v1/collections/docs/search",
            json!({"query": "q", "top_k": -1}),
            422,
        ),
        (
            "empty query",
            "/v1/collections/docs/search",
            json!({"query": ""}),
            400,
        ),
        ("missing query", "/v1/collections/docs/search", json!({}), 422),
        (
            "filter not an object",
            "/v1/collections/docs/search",
            json!({"query": "q", "filter": "x"}),
            422,
        ),
        (
            "search a missing collection",
            "/v1/collections/nope/search",
            json!({"query": "q"}),
            404,
        ),
    ];
    for (what, path, body, want) in cases {
        let (status, resp) = api.post(path, body).await;
        assert_error(status, &resp, want, what);
    }
    if store == StoreKind::Postgres {
        // Postgres cannot store U+0000 (the in-memory store can): a 400
        // naming it, never a 500 from the database.
        let nul_meta = json!({"documents": [{"id": "n", "text": "t", "metadata": {"k": "a\u{0}b"}}]});
        for (what, body) in [
            ("NUL in a text", one("n", "before\u{0}after")),
            ("NUL in an id", one("a\u{0}b", "text")),
            ("NUL in metadata", nul_meta),
        ] {
            let (status, resp) = api.post("/v1/collections/docs/documents", body).await;
            assert_error(status, &resp, 400, what);
        }
        let search = "/v1/collections/docs/search";
        let (status, resp) = api
            .post(search, json!({"query": "q", "filter": {"k": "\u{0}"}}))
            .await;
        assert_error(status, &resp, 400, "NUL in a filter");
        let (status, resp) = api
            .post(search, json!({"query": "a\u{0}b", "mode": "lexical"}))
            .await;
        assert_eq!(status, 200, "a NUL in a query separates words: {resp}");
    }
    let (status, body) = api.get("/v1/collections/bad.name").await;
    assert_error(status, &body, 400, "invalid name in the path");
    let (status, body) = api.delete("/v1/collections/nope").await;
    assert_error(status, &body, 404, "delete a missing collection");
    let resp = api
        .c
        .post(format!("{}/v1/collections/docs/search", api.base))
        .header("content-type", "application/json")
        .body(r#"{"query": "#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");

    // Nothing was written by any of that; the server still works.
    let (_, got) = api.get("/v1/collections/docs").await;
    assert_eq!(got["documents"], 0, "{got}");
    api.ok("/v1/collections/docs/documents", one("d", "still alive"))
        .await;
    let ids = api.search("docs", json!({"query": "alive"})).await;
    assert_eq!(ids, ["d"]);
}

async fn documents_survive_a_restart(store: StoreKind) {
    let pg = store.start();
    let dir = tempfile::tempdir().unwrap();
    let flags = |c: &mut ServeConfig| {
        embedder_only(c);
        use_store(c, pg.as_ref());
        c.data_dir = Some(dir.path().to_path_buf());
    };

    let (addr, server) = start_on_own_thread(flags);
    let api = Api::new(&format!("http://{addr}"), None);
    api.ok(
        "/v1/collections",
        json!({"name": "kb", "chunk_tokens": 32, "chunk_overlap": 4}),
    )
    .await;
    api.ok("/v1/collections/kb/documents", docs()).await;
    assert_eq!(
        api.search("kb", json!({"query": "capital of France", "top_k": 1}))
            .await,
        ["paris"]
    );
    server.stop();

    let (addr, _server) = start_on_own_thread(flags);
    let api = Api::new(&format!("http://{addr}"), None);
    let (status, got) = api.get("/v1/collections/kb").await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["documents"], 4);
    assert_eq!(
        (got["chunk_tokens"].as_u64(), got["chunk_overlap"].as_u64()),
        (Some(32), Some(4))
    );
    for (query, want) in [("capital of France", "paris"), ("How do I bake bread?", "bread")] {
        let ids = api.search("kb", json!({"query": query, "top_k": 1})).await;
        assert_eq!(ids, [want], "{query}");
    }
}

async fn documents_list_a_page_at_a_time(store: StoreKind) {
    let pg = store.start();
    let (addr, _server) = start_on_own_thread(|c| {
        embedder_only(c);
        use_store(c, pg.as_ref());
    });
    let api = Api::new(&format!("http://{addr}"), None);
    api.ok("/v1/collections", json!({"name": "listed"})).await;
    api.ok("/v1/collections/listed/documents", docs()).await;
    let ids = |page: &Value| -> Vec<String> {
        (page["data"].as_array().unwrap().iter())
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, all) = api.get("/v1/collections/listed/documents").await;
    assert_eq!(status, 200, "{all}");
    let mut want: Vec<String> = (docs()["documents"].as_array().unwrap().iter())
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    want.sort();
    assert_eq!(ids(&all), want, "{all}");
    assert_eq!(all["has_more"], false);
    let first = &all["data"][0];
    assert_eq!(first["object"], "document.summary");
    assert_eq!(first["metadata"]["topic"], "food", "{first}");
    assert!(first["chunks"].as_u64().unwrap() >= 1, "{first}");

    // Two pages of two, the second after the first's last id.
    let (_, one) = api.get("/v1/collections/listed/documents?limit=2").await;
    assert_eq!(
        (ids(&one), one["has_more"].as_bool()),
        (want[..2].to_vec(), Some(true)),
        "{one}"
    );
    assert_eq!(one["last_id"], want[1].as_str());
    let after = format!("/v1/collections/listed/documents?limit=2&after={}", want[1]);
    let (_, two) = api.get(&after).await;
    assert_eq!(
        (ids(&two), two["has_more"].as_bool()),
        (want[2..].to_vec(), Some(false)),
        "{two}"
    );

    for (query, what) in [
        ("?limit=0", "limit 0"),
        ("?limit=lots", "limit not a number"),
        ("?limit=100000", "limit too large"),
        ("?page=2", "unknown parameter"),
    ] {
        let (status, body) = api.get(&format!("/v1/collections/listed/documents{query}")).await;
        assert_error(status, &body, 400, what);
    }
    let (status, body) = api.get("/v1/collections/missing/documents").await;
    assert_error(status, &body, 404, "missing collection");
}
