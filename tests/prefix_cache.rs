//! Automatic prefix caching over HTTP with the real generator: a second
//! request sharing a long prefix with the first prefills only its own tail
//! (`usage.prompt_tokens_details.cached_tokens`, on chat and completions,
//! whole and streamed) and answers exactly as a server without the cache
//! (tokens and logprobs); one tenant never gets cached tokens from another
//! tenant's prefix.

use std::sync::OnceLock;

use ragd_suite::{generator_only, get_text, metric_value, start_on_own_thread, StopOnDrop};
use serde_json::{json, Value};

const GEN: &str = "smollm2-135m-instruct-q4_1";
const ADMIN_KEY: &str = "test-admin-key-prefix-cache-0123";
/// `ragd serve`'s default KV block size: only whole blocks are shared.
const BLOCK: u64 = 16;

/// The servers of this binary: one with the prefix cache (the default) and
/// API keys for two tenants, one without it (single-user).
struct Servers {
    cached: String,
    uncached: String,
    /// API keys of tenants `acme` and `globex` on `cached`.
    acme: String,
    globex: String,
    _handles: Vec<StopOnDrop>,
    _dir: tempfile::TempDir,
}

fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path().join("admin.key");
        std::fs::write(&admin, format!("{ADMIN_KEY}\n")).unwrap();
        let keys = dir.path().join("keys.toml");
        let (cached, h1) = start_on_own_thread(|c| {
            generator_only(c);
            assert!(c.models.prefix_cache, "on by default");
            c.auth.no_auth = false;
            c.auth.admin_key_file = Some(admin.clone());
            c.auth.keys_file = Some(keys.clone());
        });
        let (uncached, h2) = start_on_own_thread(|c| {
            generator_only(c);
            c.models.prefix_cache = false;
        });
        let cached = format!("http://{cached}");
        // Keys through the admin API, off any test's runtime.
        let base = cached.clone();
        let (acme, globex) =
            std::thread::spawn(move || (create_key(&base, "acme"), create_key(&base, "globex")))
                .join()
                .unwrap();
        Servers {
            cached,
            uncached: format!("http://{uncached}"),
            acme,
            globex,
            _handles: vec![h1, h2],
            _dir: dir,
        }
    })
}

fn create_key(base: &str, tenant: &str) -> String {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{base}/admin/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"tenant": tenant}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().unwrap();
    body["key"].as_str().unwrap().to_string()
}

/// Posts `body` as `key`'s tenant (`None`: single-user), never answered
/// from the response cache.
async fn post(base: &str, key: Option<&str>, path: &str, body: &Value) -> Value {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("cache-control", "no-cache")
        .json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {text}");
    if body["stream"] == true {
        // The usage chunk (last before [DONE]) with the streamed text.
        let mut text_out = String::new();
        let mut usage = Value::Null;
        for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
            if data == "[DONE]" {
                break;
            }
            let v: Value = serde_json::from_str(data).unwrap();
            if let Some(c) = v["choices"].get(0) {
                let piece = c["text"].as_str().or_else(|| c["delta"]["content"].as_str());
                text_out.push_str(piece.unwrap_or_default());
            }
            if !v["usage"].is_null() {
                usage = v["usage"].clone();
            }
        }
        return json!({"text": text_out, "usage": usage});
    }
    serde_json::from_str(&text).unwrap()
}

/// About 500 tokens of retrieved sources: what RAG prompts repeat.
fn sources() -> String {
    let facts = [
        "The Rhine flows from the Swiss Alps to the North Sea through Germany and the Netherlands.",
        "Basalt is a fine-grained volcanic rock that forms from the rapid cooling of lava.",
        "The harbour of Rotterdam handles more cargo than any other port in Europe.",
        "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
        "A paged KV cache stores attention keys and values in fixed-size blocks.",
        "The Danube crosses ten countries before it reaches the Black Sea.",
    ];
    let mut out = String::from("Answer the question using only these sources.\n");
    for i in 0..24 {
        out.push_str(&format!("[{}] {}\n", i + 1, facts[i % facts.len()]));
    }
    out
}

fn chat(question: &str) -> Value {
    json!({
        "model": GEN,
        "messages": [
            {"role": "system", "content": sources()},
            {"role": "user", "content": question},
        ],
        "temperature": 0,
        "max_tokens": 24,
        "logprobs": true,
    })
}

fn completion(question: &str) -> Value {
    json!({
        "model": GEN,
        "prompt": format!("{}\nQuestion: {question}\nAnswer:", sources()),
        "temperature": 0,
        "max_tokens": 24,
        "logprobs": 1,
    })
}

/// The token ids `body` (a chat or completion request) feeds the model.
async fn prompt_ids(base: &str, key: &str, body: &Value) -> Vec<u64> {
    let mut req = json!({"model": GEN});
    match body.get("messages") {
        Some(m) => {
            req["messages"] = m.clone();
            req["add_generation_prompt"] = json!(true);
        }
        None => req["prompt"] = body["prompt"].clone(),
    }
    let out = post(base, Some(key), "/tokenize", &req).await;
    out["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect()
}

/// What a cache holding `first`'s blocks gives `second`: its whole blocks
/// within the shared prefix, short of its last token.
fn expected_cached(first: &[u64], second: &[u64]) -> u64 {
    let shared = first.iter().zip(second).take_while(|(a, b)| a == b).count() as u64;
    shared.min(second.len() as u64 - 1) / BLOCK * BLOCK
}

fn cached_tokens(body: &Value) -> u64 {
    body["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("no cached_tokens in {body}"))
}

async fn hit_tokens(base: &str) -> f64 {
    let text = get_text(base, "/metrics").await;
    metric_value(&text, "ragd_prefix_cache_hit_tokens_total", "").unwrap()
}

/// Chat or completions: the second of two requests with the same sources
/// prefills only what follows its cached blocks, and answers as a server
/// without the cache does, token for token and logprob for logprob.
async fn second_request_prefills_only_its_tail(path: &str, make: fn(&str) -> Value, key: &str, base: &str) {
    let s = servers();
    let first = make("Which river reaches the Black Sea?");
    let second = make("What does a paged KV cache store?");
    let (ids1, ids2) = (
        prompt_ids(base, key, &first).await,
        prompt_ids(base, key, &second).await,
    );
    let want = expected_cached(&ids1, &ids2);
    assert!(want >= 480, "the sources are the long shared prefix: {want}");

    let hits_before = hit_tokens(base).await;
    let a = post(base, Some(key), path, &first).await;
    assert_eq!(cached_tokens(&a), 0, "nothing cached yet");
    let b = post(base, Some(key), path, &second).await;
    assert_eq!(b["usage"]["prompt_tokens"], ids2.len());
    assert_eq!(
        cached_tokens(&b),
        want,
        "only the tail after the shared blocks is prefilled"
    );
    let tail = ids2.len() as u64 - want;
    let own = ids2.len() - ids1.iter().zip(&ids2).take_while(|(x, y)| x == y).count();
    assert!(
        tail < own as u64 + BLOCK,
        "prefilled {tail} tokens for a tail of {own}"
    );
    // (Other tests run on this server at the same time: at least ours.)
    assert!(hit_tokens(base).await - hits_before >= want as f64);

    // Identical to an uncached run: tokens, text and logprobs.
    for (req, got) in [(&first, &a), (&second, &b)] {
        let plain = post(&s.uncached, None, path, req).await;
        assert_eq!(cached_tokens(&plain), 0);
        assert_eq!(
            plain["choices"], got["choices"],
            "{path}: the cache changed the answer"
        );
    }
    // Streamed, the usage chunk says so too (the second request's blocks
    // are cached now: all but its last partial block).
    let mut streamed = second.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let c = post(base, Some(key), path, &streamed).await;
    assert_eq!(cached_tokens(&c), expected_cached(&ids2, &ids2));
    let text = b["choices"][0]["message"]["content"]
        .as_str()
        .or_else(|| b["choices"][0]["text"].as_str());
    assert_eq!(c["text"].as_str(), text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_sharing_sources_prefills_only_its_question_and_answers_the_same() {
    let s = servers();
    second_request_prefills_only_its_tail("/v1/chat/completions", chat, &s.acme, &s.cached).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_sharing_sources_prefills_only_its_question_and_answers_the_same() {
    let s = servers();
    // Another tenant than the chat test's, so the two never share blocks.
    second_request_prefills_only_its_tail("/v1/completions", completion, &s.globex, &s.cached).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_gets_no_cached_tokens_from_another_tenants_prefix() {
    let s = servers();
    let base = &s.cached;
    // Sources no other test sends (from the first block on).
    let mut body = chat("Which rock forms from lava?");
    body["messages"][0]["content"] = json!(format!("Isolation check 7f3a.\n{}", sources()));
    let ids = prompt_ids(base, &s.acme, &body).await;
    let full = expected_cached(&ids, &ids);
    let a = post(base, Some(&s.acme), "/v1/chat/completions", &body).await;
    assert_eq!(cached_tokens(&a), 0);
    let b = post(base, Some(&s.globex), "/v1/chat/completions", &body).await;
    assert_eq!(cached_tokens(&b), 0, "globex got acme's blocks: {}", b["usage"]);
    // acme asking again finds all of its own blocks.
    let a2 = post(base, Some(&s.acme), "/v1/chat/completions", &body).await;
    assert_eq!(cached_tokens(&a2), full);
    assert!(full >= 480, "{full}");
    // The same answer every time, cached or not.
    assert_eq!(b["choices"], a["choices"]);
    assert_eq!(a2["choices"], a["choices"]);
    // And globex, asking again, finds its own.
    let b2 = post(base, Some(&s.globex), "/v1/chat/completions", &body).await;
    assert_eq!(cached_tokens(&b2), full);
}
