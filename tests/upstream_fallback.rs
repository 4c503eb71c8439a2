//! Fallback to upstream servers, with real processes on loopback: a second
//! ragd as the spare for an overloaded one, and a small test upstream that
//! can be told to fail, refuse with 429, stall or break its stream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::StreamExt;
use ragd_server::config::{ServeConfig, UpstreamSpec, UpstreamsConfig};
use ragd_service::resilience::{BreakerConfig, RetryPolicy};
use ragd_suite::{
    generator_only, get_text, metric_value, no_models, post_json, serve_on_own_thread, start_on_own_thread,
};
use serde_json::{json, Value};

const GEN: &str = "smollm2-135m-instruct-q4_1";
const REMOTE: &str = "remote-model";

/// How the test upstream answers.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Answer,
    Fail500,
    /// 429 with `Retry-After: 1` once, then answers.
    BusyOnce,
    Stall,
    /// Two chunks of a stream, then the connection breaks.
    BreakStream,
}

struct Fake {
    name: &'static str,
    mode: Mutex<Mode>,
    requests: AtomicUsize,
    /// Bodies and `Authorization` headers received.
    seen: Mutex<Vec<(Value, String)>>,
}

impl Fake {
    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn fake_chat(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: axum::Json<Value>) -> Response {
    fake.requests.fetch_add(1, Ordering::SeqCst);
    let auth = (headers.get("authorization").and_then(|v| v.to_str().ok()))
        .unwrap_or("")
        .to_string();
    fake.seen.lock().unwrap().push((body.0.clone(), auth));
    let mode = *fake.mode.lock().unwrap();
    let text = format!("answer from {}", fake.name);
    match mode {
        Mode::Fail500 => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        Mode::BusyOnce => {
            fake.set(Mode::Answer);
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "busy").into_response()
        }
        Mode::Stall => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            (StatusCode::OK, "too late").into_response()
        }
        Mode::BreakStream => {
            let chunk = |t: &str| {
                let c = json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": REMOTE,
                               "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": null}]});
                Ok::<Bytes, std::io::Error>(Bytes::from(format!("data: {c}\n\n")))
            };
            let parts = vec![
                chunk("half "),
                chunk("an answer"),
                Err(std::io::Error::other("connection lost")),
            ];
            let stream = futures::stream::iter(parts).then(|p| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                p
            });
            ([("content-type", "text/event-stream")], Body::from_stream(stream)).into_response()
        }
        Mode::Answer => axum::Json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": REMOTE,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
        }))
        .into_response(),
    }
}

/// Starts a test upstream on its own thread; returns it and its address.
fn fake_upstream(name: &'static str, mode: Mode) -> (Arc<Fake>, SocketAddr) {
    let fake = Arc::new(Fake {
        name,
        mode: Mutex::new(mode),
        requests: AtomicUsize::new(0),
        seen: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(fake_chat))
        .route(
            "/v1/models",
            get(|| async { axum::Json(json!({"data": [{"id": REMOTE}]})) }),
        )
        .with_state(fake.clone());
    let addr = serve_on_own_thread(app);
    (fake, addr)
}

fn upstream(name: &str, addr: SocketAddr, models: &[&str]) -> UpstreamSpec {
    UpstreamSpec {
        name: name.into(),
        url: format!("http://{addr}"),
        key: Some(ragd_server::config::Secret(format!("key-of-{name}"))),
        key_file: None,
        models: Some(models.iter().map(|m| m.to_string()).collect()),
    }
}

/// A front ragd without models whose `remote-model` goes to `route`.
fn front(upstreams: Vec<UpstreamSpec>, route: &[&str], timeout: Duration) -> impl FnOnce(&mut ServeConfig) {
    let route: Vec<String> = route.iter().map(|s| s.to_string()).collect();
    move |c: &mut ServeConfig| {
        no_models(c);
        c.upstreams = UpstreamsConfig {
            upstreams,
            routes: vec![(REMOTE.into(), route)],
            timeout,
            retry: RetryPolicy {
                attempts: 1,
                ..RetryPolicy::default()
            },
            breaker: BreakerConfig {
                failures: 3,
                window: Duration::from_secs(60),
                cooldown: Duration::from_secs(2),
            },
            ..UpstreamsConfig::default()
        };
    }
}

/// Two test upstreams and a front ragd routing `remote-model` to the
/// first, then the second; `tweak` adjusts the front's configuration.
struct Pair {
    first: Arc<Fake>,
    second: Arc<Fake>,
    base: String,
    _server: ragd_suite::StopOnDrop,
}

fn pair(
    first: (&'static str, Mode),
    second: (&'static str, Mode),
    timeout: Duration,
    tweak: impl FnOnce(&mut ServeConfig),
) -> Pair {
    let (a, a_addr) = fake_upstream(first.0, first.1);
    let (b, b_addr) = fake_upstream(second.0, second.1);
    let ups = vec![
        upstream(first.0, a_addr, &[REMOTE]),
        upstream(second.0, b_addr, &[REMOTE]),
    ];
    let (addr, server) = start_on_own_thread(move |c| {
        front(ups, &[first.0, second.0], timeout)(c);
        tweak(c);
    });
    Pair {
        first: a,
        second: b,
        base: format!("http://{addr}"),
        _server: server,
    }
}

fn ask(model: &str, max_tokens: u32) -> Value {
    json!({"model": model, "max_tokens": max_tokens, "temperature": 0,
           "messages": [{"role": "user", "content": "Name a colour."}]})
}

/// Sends one chat request; returns status, `x-ragd-served-by` and body.
async fn chat(base: &str, body: &Value) -> (u16, String, Value) {
    let r = post_json(base, "/v1/chat/completions", body).await;
    let status = r.status().as_u16();
    let by = (r.headers().get("x-ragd-served-by"))
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, by, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn local_overload_falls_back_to_a_second_ragd_and_no_client_sees_an_error() {
    let (spare, _spare_server) = start_on_own_thread(generator_only);
    let (addr, _server) = start_on_own_thread(move |c| {
        generator_only(c);
        // One sequence runs and one waits; the rest are refused locally.
        c.models.max_running = 1;
        c.models.queue_capacity = 1;
        c.models.per_tenant_queue_capacity = Some(1);
        c.upstreams.upstreams = vec![upstream("spare", spare, &[GEN])];
    });
    let base = format!("http://{addr}");
    let answers = futures::future::join_all((0..16).map(|_| {
        let base = base.clone();
        async move { chat(&base, &ask(GEN, 16)).await }
    }))
    .await;
    let mut served = std::collections::HashMap::<String, usize>::new();
    for (status, by, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert!(!body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty());
        *served.entry(by.clone()).or_default() += 1;
    }
    let (local, spared) = (served.get("local").copied(), served.get("spare").copied());
    eprintln!("16 requests: served {served:?}, 0 client-visible errors");
    assert!(local.unwrap_or(0) >= 1 && spared.unwrap_or(0) >= 1, "{served:?}");
    let metrics = get_text(&base, "/metrics").await;
    let fallbacks = metric_value(&metrics, "ragd_fallbacks_total", "to=\"spare\"").unwrap();
    assert_eq!(fallbacks as usize, spared.unwrap(), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_upstream_opens_its_breaker_until_a_probe_succeeds() {
    let p = pair(
        ("flaky", Mode::Fail500),
        ("good", Mode::Answer),
        Duration::from_secs(5),
        |_| {},
    );
    let (flaky, good, base) = (&p.first, &p.second, p.base.clone());
    let send = || {
        let base = base.clone();
        async move {
            let (status, by, body) = chat(&base, &ask(REMOTE, 8)).await;
            assert_eq!(status, 200, "{body}");
            by
        }
    };
    // Three failures open the breaker; the next requests skip `flaky`.
    for i in 0..6 {
        assert_eq!(send().await, "good");
        assert_eq!(flaky.requests(), (i + 1).min(3), "request {i}");
    }
    let metrics = get_text(&base, "/metrics").await;
    assert_eq!(
        metric_value(&metrics, "ragd_upstream_breaker_state", "flaky"),
        Some(2.0)
    );
    // After the cool-down one probe goes through; it fails: open again.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(send().await, "good");
    assert_eq!(flaky.requests(), 4);
    assert_eq!(send().await, "good");
    assert_eq!(flaky.requests(), 4);
    // Mended: the next probe succeeds and the breaker closes.
    flaky.set(Mode::Answer);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(send().await, "flaky");
    assert_eq!(send().await, "flaky");
    let metrics = get_text(&base, "/metrics").await;
    assert_eq!(
        metric_value(&metrics, "ragd_upstream_breaker_state", "flaky"),
        Some(0.0)
    );
    // Each upstream got ragd's key for it, never anything else.
    for (fake, key) in [(flaky, "Bearer key-of-flaky"), (good, "Bearer key-of-good")] {
        assert!(fake.seen.lock().unwrap().iter().all(|(_, auth)| auth == key));
    }
    assert_eq!(good.requests(), 8);
    eprintln!(
        "breaker: flaky got {} requests, good {}, 10 answered, 0 client-visible errors",
        flaky.requests(),
        good.requests()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_upstream_hits_the_deadline_and_a_busy_one_is_retried_after_its_retry_after() {
    let p = pair(
        ("stall", Mode::Stall),
        ("busy", Mode::BusyOnce),
        Duration::from_secs(1),
        |c| {
            c.upstreams.retry.attempts = 2;
        },
    );
    let (stall, busy, base) = (&p.first, &p.second, p.base.clone());
    let t0 = Instant::now();
    let (status, by, body) = chat(&base, &ask(REMOTE, 8)).await;
    let took = t0.elapsed();
    assert_eq!((status, by.as_str()), (200, "busy"), "{body}");
    // The stalled one: two attempts of 1 s (no Retry-After, short backoff);
    // the busy one: a 429, one second's wait, then the answer.
    assert_eq!((stall.requests(), busy.requests()), (2, 2));
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let metrics = get_text(&base, "/metrics").await;
    let timeouts = (metrics.lines()).find(|l| {
        l.starts_with("ragd_upstream_failures_total{") && l.contains("\"timeout\"") && l.contains("\"stall\"")
    });
    assert!(timeouts.is_some_and(|l| l.ends_with(" 2")), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_stream_ends_with_an_error_event_and_is_not_retried() {
    let p = pair(
        ("broken", Mode::BreakStream),
        ("good", Mode::Answer),
        Duration::from_secs(5),
        |_| {},
    );
    let (broken, good, base) = (&p.first, &p.second, p.base.clone());
    let mut body = ask(REMOTE, 8);
    body["stream"] = json!(true);
    let r = post_json(&base, "/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ragd-served-by"], "broken");
    let text = r.text().await.unwrap();
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(events.len(), 3, "{text}");
    assert!(
        events[0].contains("half ") && events[1].contains("an answer"),
        "{text}"
    );
    let last: Value = serde_json::from_str(events[2]).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_interrupted", "{text}");
    assert!(!text.contains("[DONE]"));
    assert_eq!((broken.requests(), good.requests()), (1, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn retrieval_runs_here_and_the_upstream_gets_the_context_not_the_rag_field() {
    let (good, good_addr) = fake_upstream("good", Mode::Answer);
    let (addr, _server) = start_on_own_thread(move |c| {
        front(
            vec![upstream("good", good_addr, &[REMOTE])],
            &["good"],
            Duration::from_secs(5),
        )(c);
        c.models.embedder = ragd_service::ModelsConfig::default().embedder;
    });
    let base = format!("http://{addr}");
    let r = post_json(&base, "/v1/collections", &json!({"name": "kb"})).await;
    assert!(r.status().is_success());
    let docs =
        json!({"documents": [{"id": "d1", "text": "The lighthouse keeper's cat is named Marmalade."}]});
    let r = post_json(&base, "/v1/collections/kb/documents", &docs).await;
    assert!(r.status().is_success());
    let mut body = ask(REMOTE, 8);
    body["messages"][0]["content"] = json!("What is the lighthouse keeper's cat called?");
    body["rag"] = json!({"collection": "kb", "top_k": 1});
    let (status, by, answer) = chat(&base, &body).await;
    assert_eq!((status, by.as_str()), (200, "good"), "{answer}");
    assert_eq!(answer["sources"][0]["document_id"], "d1", "{answer}");
    let seen = good.seen.lock().unwrap();
    let (sent, _) = &seen[0];
    assert!(sent.get("rag").is_none(), "{sent}");
    let question = sent["messages"][0]["content"].as_str().unwrap();
    assert!(
        question.contains("Marmalade") && question.contains("cat called"),
        "{question}"
    );
}
