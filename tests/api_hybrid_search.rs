//! Lexical and hybrid search end to end, on the real all-MiniLM-L6-v2:
//! `mode` on `POST .../search` and in chat's `rag`, each hit's dense and
//! lexical ranks and scores, fusion settings, replacements and deletes,
//! bad values (400 naming the field) and tenant isolation of the lexical
//! index.

use ragd_server::config::ServeConfig;
use ragd_suite::{assert_openai_error, post_json, start_on_own_thread, use_store, StoreKind};
use serde_json::{json, Value};

const ADMIN_KEY: &str = "hybrid-admin-key-0123456789abcdef";

fn embedder_only(c: &mut ServeConfig) {
    c.models.guards = vec![];
    c.models.generator = "none".into();
}

async fn call(base: &str, key: Option<&str>, path: &str, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("{base}{path}")).json(&body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn ok(base: &str, key: Option<&str>, path: &str, body: Value) -> Value {
    let (status, v) = call(base, key, path, body).await;
    assert_eq!(status, 200, "{path}: {v}");
    v
}

fn ids(hits: &Value) -> Vec<&str> {
    (hits.as_array().unwrap().iter())
        .map(|h| h["document_id"].as_str().unwrap())
        .collect()
}

fn docs() -> Value {
    json!({"documents": [
        {"id": "router", "text": "Model XR-7731 router: hold the reset button for ten seconds to restore factory settings.", "metadata": {"kind": "manual"}},
        {"id": "modem", "text": "If the internet connection drops, restart the modem and wait for the lights to settle.", "metadata": {"kind": "manual"}},
        {"id": "bread", "text": "To bake bread, mix flour, water, salt and yeast, knead the dough, then bake it.", "metadata": {"kind": "recipe"}},
        {"id": "paris", "text": "Paris is the capital and largest city of France, on the river Seine.", "metadata": {"kind": "fact"}}
    ]})
}

ragd_suite::on_both_stores!(
    search_modes_report_both_retrievers_and_follow_writes,
    tenants_never_get_each_others_lexical_hits,
);

async fn search_modes_report_both_retrievers_and_follow_writes(store: StoreKind) {
    let pg = store.start();
    let (addr, _server) = start_on_own_thread(|c| {
        embedder_only(c);
        use_store(c, pg.as_ref());
    });
    let base = format!("http://{addr}");
    ok(&base, None, "/v1/collections", json!({"name": "kb"})).await;
    ok(&base, None, "/v1/collections/kb/documents", docs()).await;
    let search = |body: Value| {
        let base = base.clone();
        async move { ok(&base, None, "/v1/collections/kb/search", body).await }
    };

    // Lexical: BM25 scores only; an exact product code and stemmed words.
    let r = search(json!({"query": "xr-7731 resetting", "mode": "lexical", "top_k": 4})).await;
    assert_eq!(ids(&r["data"]), ["router"], "{r}");
    let hit = &r["data"][0];
    assert_eq!(hit["lexical_rank"], 1);
    assert_eq!(hit["score"], hit["lexical_score"]);
    assert!(hit["score"].as_f64().unwrap() > 0.0);
    assert!(
        hit["dense_rank"].is_null() && hit["dense_score"].is_null(),
        "{hit}"
    );
    assert_eq!(
        r["usage"]["prompt_tokens"], 0,
        "a lexical search embeds nothing: {r}"
    );
    let r = search(json!({"query": "zebra giraffe", "mode": "lexical"})).await;
    assert_eq!(r["data"], json!([]), "no shared term, no hit");

    // Dense: cosine only, as before.
    let r = search(json!({"query": "how do I make a loaf at home", "mode": "dense", "top_k": 4})).await;
    assert_eq!(ids(&r["data"]).len(), 4);
    assert_eq!(r["data"][0]["document_id"], "bread");
    for (i, hit) in r["data"].as_array().unwrap().iter().enumerate() {
        assert_eq!(hit["dense_rank"], i + 1);
        assert_eq!(hit["score"], hit["dense_score"]);
        assert!(hit["lexical_rank"].is_null() && hit["lexical_score"].is_null());
    }

    // Hybrid, the default: fused by reciprocal rank, k 60.
    let r = search(json!({"query": "restore factory settings on the router", "top_k": 4})).await;
    let hits = r["data"].as_array().unwrap();
    assert_eq!(hits.len(), 4);
    assert_eq!(hits[0]["document_id"], "router");
    for hit in hits {
        let rrf = |rank: &Value| rank.as_f64().map_or(0.0, |r| 1.0 / (60.0 + r));
        let want = rrf(&hit["dense_rank"]) + rrf(&hit["lexical_rank"]);
        assert!((hit["score"].as_f64().unwrap() - want).abs() < 1e-6, "{hit}");
        assert!(
            hit["dense_rank"].is_u64(),
            "every chunk is a dense candidate: {hit}"
        );
    }
    assert_eq!(
        (hits[0]["dense_rank"].as_u64(), hits[0]["lexical_rank"].as_u64()),
        (Some(1), Some(1))
    );
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // k is configurable.
    let r = search(json!({"query": "restore factory settings on the router", "rrf_k": 1})).await;
    assert!(
        (r["data"][0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-6,
        "1/2 + 1/2: {r}"
    );
    // Weighted fusion with all the weight on one side follows that side.
    let q = "wait for the modem lights";
    let dense = search(json!({"query": q, "mode": "dense"})).await;
    let weighted = search(json!({"query": q, "fusion": "weighted", "dense_weight": 1.0})).await;
    assert_eq!(ids(&weighted["data"]), ids(&dense["data"]));
    let weighted = search(json!({"query": q, "fusion": "weighted", "dense_weight": 0.0, "top_k": 1})).await;
    assert_eq!(ids(&weighted["data"]), ["modem"]);
    // Filters apply to both retrievers.
    let r = search(json!({"query": "bread router", "filter": {"kind": "recipe"}})).await;
    assert_eq!(ids(&r["data"]), ["bread"]);

    // Replacing a document replaces its terms; deleting it removes them.
    ok(
        &base,
        None,
        "/v1/collections/kb/documents",
        json!({"documents": [{"id": "router", "text": "Sourdough needs a lively starter and a long, cool rise."}]}),
    )
    .await;
    let r = search(json!({"query": "XR-7731", "mode": "lexical"})).await;
    assert_eq!(r["data"], json!([]), "old terms gone: {r}");
    let r = search(json!({"query": "sourdough starter", "mode": "lexical"})).await;
    assert_eq!(ids(&r["data"]), ["router"]);
    let (status, _) = reqwest::Client::new()
        .delete(format!("{base}/v1/collections/kb/documents/router"))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 200);
    let r = search(json!({"query": "sourdough starter", "mode": "lexical"})).await;
    assert_eq!(r["data"], json!([]), "deleted: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_modes_and_fusion_settings_are_400s_naming_the_field() {
    let (addr, _server) = start_on_own_thread(embedder_only);
    let base = format!("http://{addr}");
    ok(&base, None, "/v1/collections", json!({"name": "kb"})).await;
    ok(&base, None, "/v1/collections/kb/documents", docs()).await;
    let cases = [
        (json!({"query": "q", "mode": "semantic"}), 400, Some("mode")),
        (json!({"query": "q", "mode": "Hybrid"}), 400, Some("mode")),
        (json!({"query": "q", "mode": ""}), 400, Some("mode")),
        (json!({"query": "q", "fusion": "max"}), 400, Some("fusion")),
        (json!({"query": "q", "rrf_k": -1}), 400, Some("rrf_k")),
        (
            json!({"query": "q", "fusion": "weighted", "dense_weight": 2}),
            400,
            Some("dense_weight"),
        ),
        (
            json!({"query": "q", "dense_weight": 0.5}),
            400,
            Some("dense_weight"),
        ),
        (
            json!({"query": "q", "fusion": "weighted", "rrf_k": 10}),
            400,
            Some("rrf_k"),
        ),
        (json!({"query": "q", "mode": 3}), 422, None),
    ];
    for (body, want, param) in cases {
        let (status, v) = call(&base, None, "/v1/collections/kb/search", body.clone()).await;
        assert_eq!(status, want, "{body}: {v}");
        let err = assert_openai_error(
            &body.to_string(),
            reqwest::StatusCode::from_u16(status).unwrap(),
            &v,
        );
        if let Some(param) = param {
            assert_eq!(err["param"], param, "{body}: {v}");
            assert!(err["message"].as_str().unwrap().contains(param), "{v}");
        }
    }
}

async fn tenants_never_get_each_others_lexical_hits(store: StoreKind) {
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
    let key = |tenant: &'static str| {
        let base = base.clone();
        async move {
            let v = ok(&base, Some(ADMIN_KEY), "/admin/keys", json!({"tenant": tenant})).await;
            v["key"].as_str().unwrap().to_string()
        }
    };
    let (a, b) = (key("acme").await, key("globex").await);
    // Same collection name, same document ids, different words.
    for (k, word) in [(&a, "aardvark"), (&b, "bumblebee")] {
        ok(&base, Some(k), "/v1/collections", json!({"name": "kb"})).await;
        let docs = json!({"documents": (0..5).map(|i| json!({
            "id": format!("d{i}"),
            "text": format!("Notes {i} about the {word}: the {word} eats, sleeps and roams the garden."),
        })).collect::<Vec<_>>()});
        ok(&base, Some(k), "/v1/collections/kb/documents", docs).await;
    }
    for mode in ["lexical", "hybrid", "dense"] {
        for (k, own, other) in [(&a, "aardvark", "bumblebee"), (&b, "bumblebee", "aardvark")] {
            // A query made of the other tenant's words: nothing of theirs.
            let q = json!({"query": format!("{other} garden"), "mode": mode, "top_k": 20});
            let r = ok(&base, Some(k), "/v1/collections/kb/search", q).await;
            let hits = r["data"].as_array().unwrap();
            assert!(mode == "lexical" || hits.len() == 5, "{mode}: {r}");
            for hit in hits {
                let text = hit["text"].as_str().unwrap();
                assert!(text.contains(own) && !text.contains(other), "{mode}: leak {hit}");
            }
            if mode == "lexical" {
                // "garden" is in all five own documents; "other" in none.
                assert_eq!(hits.len(), 5, "{r}");
                let own_q = json!({"query": own, "mode": mode, "top_k": 20});
                let r = ok(&base, Some(k), "/v1/collections/kb/search", own_q).await;
                assert_eq!(r["data"].as_array().unwrap().len(), 5);
                let other_q = json!({"query": other, "mode": mode});
                let r = ok(&base, Some(k), "/v1/collections/kb/search", other_q).await;
                assert_eq!(r["data"], json!([]), "{r}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rag_takes_a_mode() {
    let (addr, _server) = start_on_own_thread(|c| c.models.guards = vec![]);
    let base = format!("http://{addr}");
    ok(&base, None, "/v1/collections", json!({"name": "kb"})).await;
    ok(&base, None, "/v1/collections/kb/documents", docs()).await;
    let chat = |rag: Value| {
        json!({"model": "smollm2-135m-instruct-q4_1", "temperature": 0, "max_tokens": 4,
               "messages": [{"role": "user", "content": "How do I reset the XR-7731?"}], "rag": rag})
    };
    let v = post_json(
        &base,
        "/v1/chat/completions",
        &chat(json!({"collection": "kb", "top_k": 2, "mode": "lexical"})),
    )
    .await
    .json::<Value>()
    .await
    .unwrap();
    assert_eq!(ids(&v["sources"]), ["router"], "{v}");
    assert_eq!(v["sources"][0]["lexical_rank"], 1);
    assert!(v["sources"][0]["dense_rank"].is_null(), "{v}");
    let v: Value = (post_json(
        &base,
        "/v1/chat/completions",
        &chat(json!({"collection": "kb", "top_k": 2})),
    )
    .await)
        .json()
        .await
        .unwrap();
    assert_eq!(v["sources"][0]["document_id"], "router", "{v}");
    assert!(
        v["sources"][0]["dense_rank"].is_u64() && v["sources"][0]["lexical_rank"].is_u64(),
        "{v}"
    );
    for (rag, param) in [
        (json!({"collection": "kb", "mode": "keyword"}), "mode"),
        (
            json!({"collection": "kb", "fusion": "weighted", "rrf_k": 5}),
            "rrf_k",
        ),
    ] {
        let resp = post_json(&base, "/v1/chat/completions", &chat(rag)).await;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(status, 400, "{v}");
        assert_eq!(assert_openai_error("rag", status, &v)["param"], param, "{v}");
    }
}
