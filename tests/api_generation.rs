//! `/v1/chat/completions` and `/v1/completions` over HTTP with the real
//! generator: reference tokens, batch invariance under concurrency,
//! streaming, cancellation freeing KV blocks, stop strings, bad input.

use futures::future::join_all;
use ragd_suite::{
    assert_blocks_return_to_idle, assert_steps_were_batched, get_text, metric_value, repo_root,
    shared_server, sixteen_prompts, start_on_own_thread,
};
use serde_json::{json, Value};

const GEN: &str = "smollm2-135m-instruct-q4_1";

fn base() -> String {
    format!("http://{}", shared_server())
}

/// Posts `body` with `Cache-Control: no-cache`, so the model answers: the
/// tests see real generations, never the response cache.
async fn post(path: &str, body: &Value) -> (u16, Value) {
    let (status, _, body) = send(path, body, true).await;
    (status, body)
}

async fn send(path: &str, body: &Value, no_cache: bool) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", base()))
        .json(body);
    if no_cache {
        req = req.header("cache-control", "no-cache");
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.json().await.unwrap())
}

fn fixture() -> Value {
    let path = repo_root().join("tests/fixtures/llama_greedy.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn chat_body(prompt: &str, max_tokens: u32) -> Value {
    json!({
        "model": GEN,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

async fn chat_text(prompt: &str, max_tokens: u32) -> String {
    let (status, body) = post("/v1/chat/completions", &chat_body(prompt, max_tokens)).await;
    assert_eq!(status, 200, "{body}");
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Data lines of an SSE body, until `[DONE]`.
fn sse_events(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut done = false;
    for line in text.lines() {
        if let Some(data) = line.strip_prefix("data: ") {
            assert!(!done, "data after [DONE]");
            if data == "[DONE]" {
                done = true;
            } else {
                out.push(serde_json::from_str(data).unwrap());
            }
        }
    }
    assert!(done, "no [DONE] in {text}");
    out
}

#[tokio::test]
async fn greedy_chat_matches_the_reference_tokens() {
    for case in fixture()["cases"].as_array().unwrap().iter().take(4) {
        let (status, body) = post(
            "/v1/chat/completions",
            &chat_body(case["prompt"].as_str().unwrap(), 32),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let want = case["output_text"].as_str().unwrap();
        let got = body["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(
            !got.is_empty() && want.starts_with(got),
            "{got:?} is not a prefix of {want:?}"
        );
        assert_eq!(body["usage"]["completion_tokens"], 32, "{body}");
        assert_eq!(
            body["usage"]["prompt_tokens"],
            case["prompt_ids"].as_array().unwrap().len()
        );
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert_eq!(body["object"], "chat.completion");
    }
}

#[tokio::test]
async fn sixteen_concurrent_greedy_requests_match_their_solo_runs() {
    let prompts = sixteen_prompts();
    let mut solo = Vec::new();
    for p in &prompts {
        solo.push(chat_text(p, 40).await);
    }
    let together = join_all(prompts.iter().map(|p| chat_text(p, 40))).await;
    for (i, (a, b)) in solo.iter().zip(&together).enumerate() {
        assert_eq!(a, b, "request {i} differs when batched");
    }
    assert_steps_were_batched(&base()).await;
}

#[tokio::test]
async fn streaming_gives_the_same_text_in_chunks_with_usage() {
    let prompt = "Describe how rain forms.";
    let whole = chat_text(prompt, 30).await;
    let mut body = chat_body(prompt, 30);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", base()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events = sse_events(&resp.text().await.unwrap());
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = events
        .iter()
        .filter_map(|e| {
            e["choices"].get(0)?["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, whole);
    let finish: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["choices"].get(0).map(|c| &c["finish_reason"]))
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("length")]);
    let usage = &events.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 30, "{usage}");
    assert!(events.len() > 10, "not streamed token by token");
    assert!(events.iter().all(|e| e["object"] == "chat.completion.chunk"));

    // Legacy completions stream too.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/completions", base()))
        .json(&json!({"model": GEN, "prompt": "Once upon a time", "max_tokens": 12, "temperature": 0, "stream": true}))
        .send()
        .await
        .unwrap();
    let events = sse_events(&resp.text().await.unwrap());
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert!(!text.is_empty());
    assert!(events.iter().all(|e| e["object"] == "text_completion"));
}

#[tokio::test]
async fn stop_strings_end_the_answer_and_are_not_sent() {
    let prompt = "List three primary colors.";
    let whole = chat_text(prompt, 40).await;
    // Stop on a word from the middle of the known answer.
    let word = whole
        .split_whitespace()
        .nth(4)
        .expect("a longer answer")
        .to_string();
    let mut body = chat_body(prompt, 40);
    body["stop"] = json!([word.clone()]);
    let (status, resp) = post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{resp}");
    let got = resp["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(resp["choices"][0]["finish_reason"], "stop");
    let cut = whole.find(&word).unwrap();
    assert_eq!(got, &whole[..cut], "stop {word:?}");
}

#[tokio::test]
async fn a_cancelled_stream_frees_its_kv_blocks_and_the_others_go_on() {
    // Its own server, so no other test's requests hold blocks.
    let (addr, _stop) = start_on_own_thread(|c| {
        c.models.embedder = "none".into();
        c.models.guards = vec![];
    });
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let body = |i: usize| {
        json!({"model": GEN, "prompt": format!("Story number {i}: once upon a time"), "max_tokens": 120,
               "temperature": 0, "ignore_eos": true, "stream": true})
    };
    let url = format!("{base}/v1/completions");
    let others: Vec<_> = (1..4)
        .map(|i| {
            let req = client.post(&url).json(&body(i));
            tokio::spawn(async move { req.send().await.unwrap().text().await.unwrap() })
        })
        .collect();
    let mut cancelled = client.post(&url).json(&body(0)).send().await.unwrap();
    for _ in 0..3 {
        cancelled.chunk().await.unwrap().expect("a first chunk");
    }
    drop(cancelled);
    for o in others {
        let events = sse_events(&o.await.unwrap());
        let n = events
            .iter()
            .filter(|e| e["choices"][0]["text"].is_string())
            .count();
        assert!(n > 50, "a stream stopped early: {n} chunks");
        assert_eq!(events.last().unwrap()["choices"][0]["finish_reason"], "length");
    }
    // Back to idle: no block held by the cancelled request.
    assert_blocks_return_to_idle(&base, "after every stream ended").await;
}

#[tokio::test]
async fn bad_generation_requests_get_clear_4xx_errors() {
    let long = "word ".repeat(5000);
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"model": GEN, "messages": [{"role": "user", "content": long}]}),
            400,
            "context",
        ),
        (
            json!({"model": GEN, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}),
            400,
            "max_tokens",
        ),
        (
            json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
            404,
            "nope",
        ),
        (json!({"model": GEN, "messages": []}), 400, "messages"),
        (
            json!({"model": GEN, "messages": [{"role": "wizard", "content": "hi"}]}),
            400,
            "role",
        ),
        (json!({"model": GEN, "messages": "hi"}), 422, ""),
        (
            json!({"model": GEN, "messages": [{"role": "user", "content": "hi"}], "temperature": 5}),
            400,
            "temperature",
        ),
        (
            json!({"model": GEN, "messages": [{"role": "user", "content": "hi"}], "n": 100}),
            400,
            "`n`",
        ),
        (
            json!({"model": GEN, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}),
            400,
            "max_tokens",
        ),
        (
            json!({"model": GEN, "messages": [{"role": "user", "content": "hi"}], "stop": ["a","b","c","d","e"]}),
            400,
            "stop",
        ),
        (
            json!({"model": GEN, "messages": [{"role": "user", "content": "hi"}], "top_logprobs": 3}),
            400,
            "logprobs",
        ),
    ];
    for (body, status, needle) in cases {
        let (got, resp) = post("/v1/chat/completions", &body).await;
        assert_eq!(got, status, "{body} -> {resp}");
        let msg = resp["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    }
    // `param` names the field at fault: the prompt is `messages` in a chat
    // and `prompt` in a completion.
    let hi = json!([{"role": "user", "content": "hi"}]);
    let params = [
        (
            "/v1/chat/completions",
            json!({"model": GEN, "messages": [{"role": "user", "content": long}]}),
            "messages",
        ),
        ("/v1/completions", json!({"model": GEN, "prompt": long}), "prompt"),
        (
            "/v1/chat/completions",
            json!({"model": GEN, "messages": hi, "max_tokens": 100000}),
            "max_tokens",
        ),
        (
            "/v1/completions",
            json!({"model": GEN, "prompt": "hi", "max_tokens": 100000}),
            "max_tokens",
        ),
        (
            "/v1/completions",
            json!({"model": GEN, "prompt": [1, 99999999]}),
            "prompt",
        ),
        (
            "/v1/chat/completions",
            json!({"model": GEN, "messages": hi, "priority": "high"}),
            "priority",
        ),
        (
            "/v1/chat/completions",
            json!({"model": GEN, "messages": hi, "priority": 5000}),
            "priority",
        ),
        (
            "/v1/completions",
            json!({"model": GEN, "prompt": "hi", "priority": -1001}),
            "priority",
        ),
        (
            "/v1/completions",
            json!({"model": GEN, "prompt": "hi", "priority": 1.5}),
            "priority",
        ),
    ];
    for (path, body, param) in params {
        let (got, resp) = post(path, &body).await;
        assert_eq!(got, 400, "{path} -> {resp}");
        assert_eq!(resp["error"]["param"], param, "{path} -> {resp}");
    }
    // A priority within bounds is taken by both.
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": GEN, "messages": hi, "max_tokens": 2, "priority": -1000}),
        ),
        (
            "/v1/completions",
            json!({"model": GEN, "prompt": "hi", "max_tokens": 2, "priority": 7}),
        ),
    ] {
        let (got, resp) = post(path, &body).await;
        assert_eq!(got, 200, "{path} -> {resp}");
    }
}

#[tokio::test]
async fn a_repeated_deterministic_request_is_answered_from_the_cache() {
    let body = chat_body("Name three colours of the rainbow, please.", 16);
    let (status, headers, first) = send("/v1/chat/completions", &body, false).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(headers["x-ragd-cache"], "miss");
    let (status, headers, second) = send("/v1/chat/completions", &body, false).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(headers["x-ragd-cache"], "hit");
    assert_eq!(first["choices"], second["choices"]);
    assert_eq!(first["usage"], second["usage"]);
    assert_ne!(first["id"], second["id"], "a hit gets its own id");
    // With no-cache the model answers again, and gives the same text.
    let (_, headers, fresh) = send("/v1/chat/completions", &body, true).await;
    assert!(headers.get("x-ragd-cache").is_none());
    assert_eq!(fresh["choices"], first["choices"]);
    // Random sampling is never cached; a seed makes it cacheable.
    let mut sampled = body.clone();
    sampled["temperature"] = json!(0.9);
    let (_, headers, _) = send("/v1/chat/completions", &sampled, false).await;
    assert!(headers.get("x-ragd-cache").is_none());
    let completion = json!({"model": GEN, "prompt": "The rainbow has", "max_tokens": 8,
                            "temperature": 0.9, "seed": 11});
    let (_, headers, first) = send("/v1/completions", &completion, false).await;
    assert_eq!(headers["x-ragd-cache"], "miss");
    let (_, headers, second) = send("/v1/completions", &completion, false).await;
    assert_eq!(headers["x-ragd-cache"], "hit");
    assert_eq!(first["choices"], second["choices"]);
    let metrics = get_text(&base(), "/metrics").await;
    let hits = metric_value(&metrics, "ragd_response_cache_lookups_total", "result=\"hit\"").unwrap();
    assert!(hits >= 2.0, "{hits} hits");
}
