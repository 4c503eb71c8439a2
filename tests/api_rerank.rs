//! Reranking end to end with the tiny random cross-encoder of
//! `tests/fixtures/cross_encoder_tiny/` (`scripts/reference/cross_encoder_tiny.py`)
//! as `--reranker`: `POST /v1/rerank` (scores equal transformers', best
//! first, `top_n`, `return_documents`, `raw_scores`, usage, 4xx on bad
//! input), `/v1/models`, and RAG's `"rerank": true` (sources reordered by
//! the reranker's score, which they report); without a reranker, both
//! refuse clearly.

use ragd_server::config::ServeConfig;
use ragd_suite::{assert_openai_error, get_json, get_text, post_json, repo_root, start_on_own_thread};
use serde_json::{json, Value};

const RERANKER: &str = "cross_encoder_tiny";
const MAX_INPUTS: usize = 8;

/// What `scores.json` holds.
struct Fixture {
    pairs: Vec<(String, String)>,
    input_ids: Vec<Vec<u32>>,
    logits: Vec<f32>,
    scores: Vec<f32>,
}

fn fixture() -> Fixture {
    let path = repo_root()
        .join("tests/fixtures")
        .join(RERANKER)
        .join("scores.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let floats = |key: &str| -> Vec<f32> {
        (v[key].as_array().unwrap().iter())
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    Fixture {
        pairs: serde_json::from_value(v["pairs"].clone()).unwrap(),
        input_ids: serde_json::from_value(v["input_ids"].clone()).unwrap(),
        logits: floats("logits"),
        scores: floats("scores"),
    }
}

/// The embedder and generator of `ragd serve`, no guard, and the tiny
/// reranker (when `reranker`).
fn configure(c: &mut ServeConfig, reranker: bool) {
    let defaults = ServeConfig::default().models;
    ragd_suite::no_models(c);
    c.models.embedder = defaults.embedder;
    c.models.generator = defaults.generator;
    if reranker {
        c.models.reranker = repo_root()
            .join("tests/fixtures")
            .join(RERANKER)
            .display()
            .to_string();
    }
    c.request_limits.max_inputs = MAX_INPUTS;
}

async fn call(base: &str, path: &str, body: &Value) -> (u16, Value) {
    let resp = post_json(base, path, body).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// The 4xx error of a request, checked to be in OpenAI's shape.
async fn refused(base: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = post_json(base, path, &body).await;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    let err = assert_openai_error(path, status, &v).clone();
    (status.as_u16(), err)
}

fn close(a: &Value, b: f32) -> bool {
    (a.as_f64().unwrap() as f32 - b).abs() < 1e-4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerank_scores_orders_and_refuses_bad_input() {
    let (addr, _server) = start_on_own_thread(|c| configure(c, true));
    let base = format!("http://{addr}");
    let fx = fixture();
    // The fixture's pairs 0, 1 and 6 share one query.
    let picked = [0usize, 1, 6];
    let query = fx.pairs[0].0.clone();
    let documents: Vec<&str> = picked.iter().map(|&i| fx.pairs[i].1.as_str()).collect();
    let tokens: usize = picked.iter().map(|&i| fx.input_ids[i].len()).sum();
    let mut best_first = picked.to_vec();
    best_first.sort_by(|&a, &b| fx.scores[b].total_cmp(&fx.scores[a]));

    let (status, v) = call(
        &base,
        "/v1/rerank",
        &json!({"model": RERANKER, "query": query, "documents": documents}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model"], RERANKER);
    assert_eq!(v["usage"]["total_tokens"], tokens, "{v}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for (r, &i) in results.iter().zip(&best_first) {
        let index = picked.iter().position(|&p| p == i).unwrap();
        assert_eq!(r["index"], index, "{v}");
        assert!(
            close(&r["relevance_score"], fx.scores[i]),
            "{r} vs {}",
            fx.scores[i]
        );
        assert!(r.get("document").is_none(), "{r}");
    }

    // top_n, return_documents, documents as objects, raw scores, no model
    // named, and the other paths.
    let body = json!({"query": query, "documents": documents.iter().map(|d| json!({"text": d})).collect::<Vec<_>>(),
                      "top_n": 1, "return_documents": true, "raw_scores": true});
    for path in ["/v1/rerank", "/v2/rerank", "/rerank"] {
        let (status, v) = call(&base, path, &body).await;
        assert_eq!(status, 200, "{path}: {v}");
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 1, "{v}");
        let best = best_first[0];
        assert_eq!(results[0]["document"]["text"], fx.pairs[best].1, "{v}");
        assert!(close(&results[0]["relevance_score"], fx.logits[best]), "{v}");
    }
    let (_, v) = call(
        &base,
        "/v1/rerank",
        &json!({"query": "q", "documents": ["a", "b"], "top_n": 10}),
    )
    .await;
    assert_eq!(
        v["results"].as_array().unwrap().len(),
        2,
        "top_n past the documents: all"
    );
    let (_, v) = call(
        &base,
        "/v1/rerank",
        &json!({"query": "q", "documents": ["", "b"], "return_documents": true}),
    )
    .await;
    assert_eq!(
        v["results"].as_array().unwrap().len(),
        2,
        "an empty document is scored: {v}"
    );

    // Bad input: OpenAI-style 4xx naming the field.
    let too_many: Vec<String> = (0..=MAX_INPUTS).map(|i| format!("doc {i}")).collect();
    for (body, want, param) in [
        (json!({"query": "q", "documents": []}), 400, "documents"),
        (json!({"query": "q", "documents": too_many}), 400, "documents"),
        (json!({"query": "  ", "documents": ["a"]}), 400, "query"),
        (
            json!({"query": "q", "documents": ["a"], "top_n": 0}),
            400,
            "top_n",
        ),
        (
            json!({"query": "q", "documents": ["a"], "model": "nope"}),
            404,
            "",
        ),
        (json!({"query": "q", "documents": "a"}), 422, ""),
        (json!({"query": 5, "documents": ["a"]}), 422, ""),
        (json!({"documents": ["a"]}), 422, ""),
        (json!({"query": "q", "documents": ["a"], "texts": ["a"]}), 422, ""),
    ] {
        let (status, err) = refused(&base, "/v1/rerank", body.clone()).await;
        assert_eq!(status, want, "{body}: {err}");
        if !param.is_empty() {
            assert_eq!(err["param"], param, "{body}: {err}");
        }
    }
    let (_, err) = refused(
        &base,
        "/v1/rerank",
        json!({"model": "nope", "query": "q", "documents": ["a"]}),
    )
    .await;
    assert_eq!(err["code"], "model_not_found", "{err}");

    // The reranker is a model of the server; its requests are counted.
    let models = get_json(&base, "/v1/models").await;
    let card = (models["data"].as_array().unwrap().iter())
        .find(|m| m["id"] == RERANKER)
        .unwrap_or_else(|| panic!("{models}"));
    assert_eq!(card["kind"], "reranker");
    assert_eq!(card["max_input_tokens"], 64);
    let ready = get_json(&base, "/ready").await;
    assert!(
        ready["expected"].as_array().unwrap().contains(&json!("reranker")),
        "{ready}"
    );
    let metrics = get_text(&base, "/metrics").await;
    let ok: f64 = (metrics.lines())
        .filter(|l| l.starts_with("ragd_http_requests_total{"))
        .filter(|l| l.contains("route=\"/v1/rerank\"") && l.contains("status=\"200\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(ok >= 3.0, "{metrics}");
    assert!(
        metrics.contains(&format!("model=\"{RERANKER}\"")),
        "the worker's metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rag_reranks_the_candidates() {
    let (addr, _server) = start_on_own_thread(|c| configure(c, true));
    let base = format!("http://{addr}");
    let docs: Vec<Value> = (fixture().pairs.iter().enumerate())
        .filter(|(_, (_, d))| !d.is_empty())
        .map(|(i, (_, d))| json!({"id": format!("d{i}"), "text": d}))
        .collect();
    assert_eq!(
        call(&base, "/v1/collections", &json!({"name": "kb"})).await.0,
        200
    );
    let (status, v) = call(&base, "/v1/collections/kb/documents", &json!({"documents": docs})).await;
    assert_eq!(status, 200, "{v}");
    let question = "how do i reset the router";
    let chat = |rag: Value| {
        json!({"model": "smollm2-135m-instruct-q4_1", "temperature": 0, "max_tokens": 2,
               "messages": [{"role": "user", "content": question}], "rag": rag})
    };

    let (status, v) = call(
        &base,
        "/v1/chat/completions",
        &chat(json!({"collection": "kb", "top_k": 2, "rerank": true, "candidates": 5})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let sources = v["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2, "{v}");
    let scores: Vec<f64> = sources
        .iter()
        .map(|s| s["rerank_score"].as_f64().unwrap())
        .collect();
    assert!(scores[0] >= scores[1], "best first: {v}");
    // The same scores /v1/rerank gives those texts; and they are the best
    // of the 5 candidates.
    let (_, plain) = call(
        &base,
        "/v1/chat/completions",
        &chat(json!({"collection": "kb", "top_k": 5})),
    )
    .await;
    let candidates: Vec<&str> = (plain["sources"].as_array().unwrap().iter())
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    assert_eq!(candidates.len(), 5, "{plain}");
    assert!(plain["sources"][0].get("rerank_score").is_none(), "{plain}");
    let (_, ranked) = call(
        &base,
        "/v1/rerank",
        &json!({"query": question, "documents": candidates, "top_n": 2}),
    )
    .await;
    for (source, r) in sources.iter().zip(ranked["results"].as_array().unwrap()) {
        let i = r["index"].as_u64().unwrap() as usize;
        assert_eq!(source["text"], candidates[i], "{v}\n{ranked}");
        assert!(close(
            &source["rerank_score"],
            r["relevance_score"].as_f64().unwrap() as f32
        ));
    }

    for (rag, param) in [
        (
            json!({"collection": "kb", "top_k": 4, "rerank": true, "candidates": 3}),
            "candidates",
        ),
        (json!({"collection": "kb", "candidates": 8}), "candidates"),
        (json!({"collection": "kb", "rerank": "yes"}), ""),
    ] {
        let (status, err) = refused(&base, "/v1/chat/completions", chat(rag.clone())).await;
        assert!(status == 400 || status == 422, "{rag}: {status} {err}");
        if !param.is_empty() {
            assert_eq!(err["param"], param, "{rag}: {err}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_reranker_rerank_is_refused_clearly() {
    let (addr, _server) = start_on_own_thread(|c| configure(c, false));
    let base = format!("http://{addr}");
    let (status, err) = refused(&base, "/v1/rerank", json!({"query": "q", "documents": ["a"]})).await;
    assert_eq!(status, 404, "{err}");
    assert!(err["message"].as_str().unwrap().contains("--reranker"), "{err}");
    assert_eq!(
        call(&base, "/v1/collections", &json!({"name": "kb"})).await.0,
        200
    );
    let body = json!({"model": "smollm2-135m-instruct-q4_1", "max_tokens": 2,
                      "messages": [{"role": "user", "content": "hello"}],
                      "rag": {"collection": "kb", "rerank": true}});
    let (status, err) = refused(&base, "/v1/chat/completions", body).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["param"], "rerank", "{err}");
    assert!(err["message"].as_str().unwrap().contains("--reranker"), "{err}");
}
