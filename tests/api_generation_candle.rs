//! The device-generic candle generator backend behind the real server, on
//! the CPU (`--generator-backend candle`): the reference greedy tokens with
//! an f32 KV cache, batch invariance for 16 concurrent requests, and
//! preemption and cancellation returning every KV block.

use std::net::SocketAddr;
use std::sync::OnceLock;

use futures::future::join_all;
use ragd_models::llama::{GeneratorBackend, KvDtype};
use ragd_server::config::ServeConfig;
use ragd_suite::{
    assert_blocks_return_to_idle, assert_steps_were_batched, generator_only, get_text, metric_value,
    repo_root, sixteen_prompts, start_on_own_thread, StopOnDrop,
};
use serde_json::{json, Value};

const GEN: &str = "smollm2-135m-instruct-q4_1";

fn candle_f32(c: &mut ServeConfig) {
    generator_only(c);
    c.models.generator_backend = GeneratorBackend::Candle;
    c.models.kv_cache_dtype = KvDtype::F32;
}

/// One candle server for the tests that only read its answers.
fn server() -> SocketAddr {
    static SERVER: OnceLock<(SocketAddr, StopOnDrop)> = OnceLock::new();
    SERVER.get_or_init(|| start_on_own_thread(candle_f32)).0
}

fn chat_body(prompt: &str, max_tokens: u32) -> Value {
    json!({
        "model": GEN,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

async fn chat(addr: SocketAddr, prompt: &str, max_tokens: u32) -> Value {
    post_chat(addr, &chat_body(prompt, max_tokens)).await
}

async fn post_chat(addr: SocketAddr, body: &Value) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("cache-control", "no-cache")
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn text(body: &Value) -> String {
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn candle_backend_gives_the_reference_greedy_tokens_over_http() {
    let path = repo_root().join("tests/fixtures/llama_greedy.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    for case in cases {
        // The reference generated 32 tokens whatever they were.
        let mut body = chat_body(case["prompt"].as_str().unwrap(), 32);
        body["ignore_eos"] = json!(true);
        let body = post_chat(server(), &body).await;
        let want = case["output_text"].as_str().unwrap();
        let got = text(&body);
        assert!(
            !got.is_empty() && want.starts_with(&got),
            "{got:?} is not a prefix of {want:?}"
        );
        assert_eq!(body["usage"]["completion_tokens"], 32, "{body}");
    }
}

#[tokio::test]
async fn candle_backend_answers_16_concurrent_requests_as_it_does_alone() {
    let prompts = sixteen_prompts();
    let mut solo = Vec::new();
    for p in &prompts {
        solo.push(text(&chat(server(), p, 40).await));
    }
    let together = join_all(prompts.iter().map(|p| chat(server(), p, 40))).await;
    for (i, (a, b)) in solo.iter().zip(&together).enumerate() {
        assert_eq!(a, &text(b), "request {i} differs when batched");
    }
    assert_steps_were_batched(&format!("http://{}", server())).await;
}

#[tokio::test]
async fn candle_backend_preemption_and_cancellation_free_every_block() {
    // 4 MiB of f32 cache holds 5 blocks of 16 positions: one request of
    // about 60 positions fits, four at once do not, so some are preempted.
    let (addr, _stop) = start_on_own_thread(|c| {
        candle_f32(c);
        c.models.kv_cache_mb = 4;
    });
    let base = format!("http://{addr}");
    let prompts: Vec<String> = (0..4)
        .map(|i| format!("Tell a short story about robot number {i}."))
        .collect();
    // A preempted sequence is recomputed as one prefill chunk, whose
    // matmuls may round differently from its decode steps: its text can
    // drift after a close call, so only the lengths are compared.
    let together = join_all(prompts.iter().map(|p| {
        let mut body = chat_body(p, 40);
        body["ignore_eos"] = json!(true);
        async move { post_chat(addr, &body).await }
    }))
    .await;
    for (i, b) in together.iter().enumerate() {
        assert_eq!(b["usage"]["completion_tokens"], 40, "request {i}: {b}");
        assert!(!text(b).is_empty(), "request {i}: {b}");
    }
    let m = get_text(&base, "/metrics").await;
    let preempted = metric_value(&m, "ragd_preemptions_total", "").unwrap();
    assert!(preempted > 0.0, "no preemption: the test exercised nothing");
    assert_blocks_return_to_idle(&base, "after the preempted requests ended").await;

    // A stream dropped mid-answer frees its blocks.
    let client = reqwest::Client::new();
    let body = json!({"model": GEN, "prompt": "Once upon a time", "max_tokens": 60,
                      "temperature": 0, "ignore_eos": true, "stream": true});
    let mut cancelled = client
        .post(format!("{base}/v1/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    for _ in 0..3 {
        cancelled.chunk().await.unwrap().expect("a first chunk");
    }
    drop(cancelled);
    assert_blocks_return_to_idle(&base, "after the stream was dropped").await;
}
