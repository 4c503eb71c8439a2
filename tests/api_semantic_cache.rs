//! The semantic cache end to end (`--semantic-cache-threshold`), with the
//! real embedder and generator: a paraphrase of an earlier question gets
//! its answer, another question or another context does not.

use ragd_suite::{get_text, metric_value, post_json, start_on_own_thread};
use serde_json::{json, Value};

const GEN: &str = "smollm2-135m-instruct-q4_1";

async fn chat(base: &str, system: &str, question: &str) -> (String, Value) {
    let body = json!({"model": GEN, "temperature": 0, "max_tokens": 8, "messages": [
        {"role": "system", "content": system},
        {"role": "user", "content": question},
    ]});
    let resp = post_json(base, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    let label = resp.headers()["x-ragd-cache"].to_str().unwrap().to_string();
    (label, resp.json().await.unwrap())
}

#[tokio::test]
async fn a_paraphrase_in_the_same_context_gets_the_earlier_answer() {
    let (addr, _server) = start_on_own_thread(|c| c.caches.semantic_threshold = Some(0.85));
    let base = format!("http://{addr}");
    let brief = "Answer briefly.";
    let (label, first) = chat(&base, brief, "What is the capital of France?").await;
    assert_eq!(label, "miss");
    let (label, second) = chat(&base, brief, "What's the capital city of France?").await;
    assert_eq!(label, "semantic-hit");
    assert_eq!(first["choices"], second["choices"]);
    assert_ne!(first["id"], second["id"]);
    let (label, _) = chat(&base, brief, "How do I bake sourdough bread?").await;
    assert_eq!(label, "miss", "an unrelated question");
    let (label, _) = chat(&base, "Answer in French.", "What's the capital city of France?").await;
    assert_eq!(label, "miss", "another system message is another context");
    let metrics = get_text(&base, "/metrics").await;
    let lookups = |r: &str| {
        metric_value(
            &metrics,
            "ragd_semantic_cache_lookups_total",
            &format!("result=\"{r}\""),
        )
    };
    assert_eq!(
        (lookups("hit"), lookups("miss")),
        (Some(1.0), Some(3.0)),
        "{metrics}"
    );
}

async fn rag_chat(base: &str, question: &str) -> (u16, String, Value) {
    let body = json!({"model": GEN, "temperature": 0, "max_tokens": 8,
        "messages": [{"role": "user", "content": question}],
        "rag": {"collection": "kb", "top_k": 1}});
    let resp = post_json(base, "/v1/chat/completions", &body).await;
    let status = resp.status().as_u16();
    let label = resp
        .headers()
        .get("x-ragd-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, label, resp.json().await.unwrap())
}

/// Issue 10, finding 6: the lookup ran before retrieval, so after a
/// document and then its collection were deleted the same RAG question
/// still got `semantic-hit` with the deleted text in `sources`; and two
/// questions sharing a preamble longer than the embedder's window got each
/// other's answers.
#[tokio::test]
async fn the_semantic_cache_never_serves_changed_data_or_truncated_questions() {
    let (addr, _server) = start_on_own_thread(|c| c.caches.semantic_threshold = Some(0.85));
    let base = format!("http://{addr}");
    let create = |name: &str| json!({"name": name});
    assert_eq!(
        post_json(&base, "/v1/collections", &create("kb")).await.status(),
        200
    );
    let docs = json!({"documents": [
        {"id": "secret", "text": "The launch code of project Falcon is 7341."},
    ]});
    let resp = post_json(&base, "/v1/collections/kb/documents", &docs).await;
    assert_eq!(resp.status(), 200);
    let q = "What is the launch code of project Falcon?";
    let (_, label, first) = rag_chat(&base, q).await;
    assert_eq!(label, "miss", "{first}");
    let (_, label, _) = rag_chat(&base, q).await;
    assert_eq!(label, "semantic-hit", "the cache works while nothing changes");

    // Deleting the document changes the collection: no hit, and the
    // deleted text is not shown.
    let client = reqwest::Client::new();
    let resp = client
        .delete(format!("{base}/v1/collections/kb/documents/secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, label, body) = rag_chat(&base, q).await;
    assert_eq!((status, label.as_str()), (200, "miss"), "{body}");
    assert!(!body.to_string().contains("7341"), "{body}");
    // Deleted collection: an error, not a cached answer.
    let resp = client
        .delete(format!("{base}/v1/collections/kb"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, _, body) = rag_chat(&base, q).await;
    assert_eq!(status, 404, "{body}");
    // Re-created under the same name: nothing from before. (The exact
    // cache may answer: the prompt, with no context, is the one just
    // answered after the delete.)
    assert_eq!(
        post_json(&base, "/v1/collections", &create("kb")).await.status(),
        200
    );
    let (status, label, body) = rag_chat(&base, q).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(label, "semantic-hit", "{body}");
    assert!(!body.to_string().contains("7341"), "{body}");

    // A shared preamble longer than the embedder's window (256 tokens).
    let preamble = "Please read the following notes carefully before answering. ".repeat(40);
    let (label, _) = chat(&base, "Answer briefly.", &format!("{preamble} What is 2 + 2?")).await;
    assert_eq!(label, "miss");
    let (label, _) = chat(&base, "Answer briefly.", &format!("{preamble} Who wrote Hamlet?")).await;
    assert_eq!(label, "miss", "a question past the window is never matched");
}
