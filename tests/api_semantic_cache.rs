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
    let (addr, _server) = start_on_own_thread(&["--semantic-cache-threshold", "0.85"]);
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
