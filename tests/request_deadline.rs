//! Request deadlines and `Server-Timing` with the real models: past its
//! deadline (the server's, or the client's `x-stainless-timeout`) a whole
//! answer is a 504 `timeout` and a stream ends with an error event, and in
//! both cases the generation stops and its KV blocks are freed; every /v1
//! answer says where its time went.

use std::time::{Duration, Instant};

use ragd_suite::{generator_only, get_text, metric_value, post_json, start_on_own_thread};
use serde_json::{json, Value};

const GEN: &str = "smollm2-135m-instruct-q4_1";

/// A request that would run for minutes on 2 cores.
fn endless(stream: bool) -> Value {
    json!({"model": GEN, "max_tokens": 3000, "ignore_eos": true, "stream": stream,
           "messages": [{"role": "user", "content": "Count to a million."}]})
}

/// Waits until no KV block is in use (the cancelled sequence let go).
async fn kv_blocks_freed(base: &str) -> bool {
    for _ in 0..50 {
        let metrics = get_text(base, "/metrics").await;
        if metric_value(&metrics, "ragd_kv_blocks_used", "") == Some(0.0) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_deadline_generation_stops_and_frees_its_blocks() {
    let (addr, _server) = start_on_own_thread(|c| {
        generator_only(c);
        c.request_timeout = Some(Duration::from_secs(2));
    });
    let base = format!("http://{addr}");

    // A whole answer: 504 with OpenAI's error shape, after ~2 s.
    let t0 = Instant::now();
    let r = post_json(&base, "/v1/chat/completions", &endless(false)).await;
    let took = t0.elapsed();
    assert_eq!(r.status(), 504);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "timeout", "{body}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(
        kv_blocks_freed(&base).await,
        "the timed-out sequence kept its KV blocks"
    );

    // A stream: tokens, then an error event; no [DONE].
    let r = post_json(&base, "/v1/chat/completions", &endless(true)).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert!(events.len() > 2, "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "timeout", "{text}");
    assert!(!text.contains("[DONE]"));
    assert!(
        kv_blocks_freed(&base).await,
        "the timed-out stream kept its KV blocks"
    );

    // The client's own, shorter timeout wins.
    let t0 = Instant::now();
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .header("x-stainless-timeout", "0.5")
        .json(&endless(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert!(t0.elapsed() < Duration::from_millis(1900), "{:?}", t0.elapsed());
    // A short request is not affected.
    let mut quick = endless(false);
    quick["max_tokens"] = json!(4);
    let r = post_json(&base, "/v1/chat/completions", &quick).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_says_where_its_time_went() {
    let (addr, _server) = start_on_own_thread(|c| c.guard.screen_chat = true);
    let base = format!("http://{addr}");
    assert!(post_json(&base, "/v1/collections", &json!({"name": "kb"}))
        .await
        .status()
        .is_success());
    let docs = json!({"documents": [{"id": "d1", "text": "Oslo is the capital of Norway."}]});
    let r = post_json(&base, "/v1/collections/kb/documents", &docs).await;
    assert!(r.status().is_success());
    let body = json!({"model": GEN, "max_tokens": 8, "temperature": 0, "rag": {"collection": "kb", "top_k": 1},
                      "messages": [{"role": "user", "content": "What is the capital of Norway?"}]});
    let r = post_json(&base, "/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let timing = r.headers()["server-timing"].to_str().unwrap().to_string();
    let names: Vec<&str> = timing.split(", ").filter_map(|p| p.split(';').next()).collect();
    for stage in ["guard", "retrieve", "prompt", "ttft", "decode", "total"] {
        assert!(names.contains(&stage), "{stage} missing in {timing}");
    }
    for part in timing.split(", ") {
        let ms: f64 = part.split("dur=").nth(1).unwrap().parse().unwrap();
        assert!((0.0..60_000.0).contains(&ms), "{timing}");
    }
    // Other endpoints carry at least the total.
    let r = post_json(
        &base,
        "/v1/embeddings",
        &json!({"model": "all-minilm-l6-v2", "input": "hi"}),
    )
    .await;
    assert!(r.headers()["server-timing"]
        .to_str()
        .unwrap()
        .contains("total;dur="));
}
