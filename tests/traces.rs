//! OpenTelemetry traces end to end: a real OTLP/HTTP receiver in this test
//! (an axum server decoding `POST /v1/traces` protobuf bodies with the
//! `opentelemetry-proto` types), ragd in-process with the real embedder,
//! guard and generator exporting to it, and one RAG chat request sent with
//! a caller's W3C `traceparent`. The request must come back as one trace:
//! under the caller's trace id, the `request` span a child of the caller's
//! span, and every stage span (`auth`, `rate_limit`, `chat`, `guard`, `retrieve`, `embed`,
//! `search`, `prompt`, `cache`, `generate` with `queue`, `prefill`,
//! `decode`) leading up to `request`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use ragd_cli::cli::LogFormat;
use ragd_cli::telemetry::{self, OtlpConfig, TelemetryGuard};
use ragd_server::config::{UpstreamSpec, UpstreamsConfig};
use ragd_suite::{no_models, post_json, serve_on_own_thread, start_on_own_thread};
use serde_json::{json, Value};

const GEN: &str = "smollm2-135m-instruct-q4_1";
/// The caller's trace and span (W3C trace context, sampled).
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A span as received, with its resource's `service.name`.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    span: Span,
}

impl Got {
    fn name(&self) -> &str {
        &self.span.name
    }

    fn id(&self) -> String {
        hex(&self.span.span_id)
    }

    fn parent(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    fn attr(&self, key: &str) -> Option<&any_value::Value> {
        attr(&self.span.attributes, key)
    }

    fn int(&self, key: &str) -> Option<i64> {
        match self.attr(key)? {
            any_value::Value::IntValue(v) => Some(*v),
            _ => None,
        }
    }

    fn text(&self, key: &str) -> Option<&str> {
        match self.attr(key)? {
            any_value::Value::StringValue(v) => Some(v),
            _ => None,
        }
    }

    fn duration_ms(&self) -> f64 {
        (self.span.end_time_unix_nano - self.span.start_time_unix_nano) as f64 / 1e6
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the receiver got: spans, and each export's content type.
#[derive(Default)]
struct Received {
    spans: Vec<Got>,
    content_types: Vec<String>,
}

type Store = Arc<Mutex<Received>>;

async fn export(
    State(store): State<Store>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut out = HeaderMap::new();
    out.insert(header::CONTENT_TYPE, "application/x-protobuf".parse().unwrap());
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, out, Vec::new());
    };
    let mut got = store.lock().unwrap();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    got.content_types.push(content_type.unwrap_or("").to_string());
    for rs in req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| attr(&r.attributes, "service.name"))
            .map(|v| match v {
                any_value::Value::StringValue(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                got.spans.push(Got {
                    service: service.clone(),
                    span,
                });
            }
        }
    }
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    (StatusCode::OK, out, answer)
}

/// Starts the OTLP/HTTP receiver on its own runtime thread.
fn start_receiver() -> (SocketAddr, Store) {
    let store = Store::default();
    let app = Router::new()
        .route("/v1/traces", axum::routing::post(export))
        .with_state(store.clone());
    (serve_on_own_thread(app), store)
}

/// The process's telemetry, exporting to a receiver started with it (a
/// process has one global subscriber).
fn telemetry() -> &'static (TelemetryGuard, Store) {
    static TELEMETRY: OnceLock<(TelemetryGuard, Store)> = OnceLock::new();
    TELEMETRY.get_or_init(|| {
        let (addr, store) = start_receiver();
        let config = OtlpConfig {
            endpoint: Some(telemetry::traces_url(&format!("http://{addr}"))),
            service_name: "ragd".into(),
        };
        let guard = telemetry::init_with_traces(LogFormat::Text, Some(config)).expect("telemetry");
        (guard, store)
    })
}

async fn post(base: &str, path: &str, body: Value) -> Value {
    let resp = post_json(base, path, &body).await;
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap()
}

/// Prints the spans of one trace as a tree, from `root`.
fn tree(spans: &[Got], root: &Got, depth: usize, out: &mut String) {
    let keys = [
        "tenant",
        "stage",
        "cache.kind",
        "cache.hit",
        "rag.top_k",
        "rag.chunks",
        "hits",
        "gen_ai.request.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.response.finish_reasons",
    ];
    let attrs: Vec<String> = keys
        .iter()
        .filter_map(|k| {
            root.attr(k).map(|v| match v {
                any_value::Value::StringValue(s) => format!("{k}={s}"),
                any_value::Value::IntValue(i) => format!("{k}={i}"),
                other => format!("{k}={other:?}"),
            })
        })
        .collect();
    out.push_str(&format!(
        "{}{} ({:.1} ms) {}\n",
        "  ".repeat(depth),
        root.name(),
        root.duration_ms(),
        attrs.join(" ")
    ));
    let mut children: Vec<&Got> = spans.iter().filter(|s| s.parent() == root.id()).collect();
    children.sort_by_key(|s| s.span.start_time_unix_nano);
    for c in children {
        tree(spans, c, depth + 1, out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rag_chat_is_one_trace_under_the_callers_span() {
    // Info spans are exported whatever RUST_LOG the test runs with.
    std::env::set_var("RUST_LOG", "info,hnsw_rs=warn");
    let (_, store) = telemetry();
    let (addr, _server) = start_on_own_thread(|c| {
        c.guard.screen_chat = true;
        c.auth.rate_limit_rpm = std::num::NonZeroU32::new(10_000);
    });
    let base = format!("http://{addr}");

    post(&base, "/v1/collections", json!({"name": "kb"})).await;
    let docs = json!({"documents": [
        {"id": "boiling", "text": "Water boils at 100 degrees Celsius at sea level."},
        {"id": "freezing", "text": "Water freezes at 0 degrees Celsius."},
    ]});
    post(&base, "/v1/collections/kb/documents", docs).await;

    let chat = json!({
        "model": GEN,
        "messages": [{"role": "user", "content": "At what temperature does water boil?"}],
        "temperature": 0,
        "max_tokens": 8,
        "rag": {"collection": "kb", "top_k": 2},
    });
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .header("tracestate", "caller=1")
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The answer names the request's span in the caller's trace.
    let answer_parent = resp
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .expect("a traceparent response header")
        .to_string();
    let body: Value = resp.json().await.unwrap();
    let completion_tokens = body["usage"]["completion_tokens"].as_i64().unwrap();
    let prompt_tokens = body["usage"]["prompt_tokens"].as_i64().unwrap();
    let parts: Vec<&str> = answer_parent.split('-').collect();
    assert_eq!(parts.len(), 4, "{answer_parent}");
    assert_eq!(parts[1], TRACE_ID, "{answer_parent}");
    let request_span_id = parts[2].to_string();

    // Spans end after the answer (the body's end, the engine's cleanup):
    // flush until the request's and the generation's spans are in.
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans: Vec<Got> = loop {
        tokio::task::spawn_blocking(|| telemetry().0.flush())
            .await
            .unwrap();
        let ours: Vec<Got> = (store.lock().unwrap().spans.iter())
            .filter(|s| hex(&s.span.trace_id) == TRACE_ID)
            .cloned()
            .collect();
        let has = |name: &str| ours.iter().any(|s| s.name() == name);
        if ["request", "chat", "generate", "decode"].iter().all(|n| has(n)) {
            break ours;
        }
        assert!(
            Instant::now() < deadline,
            "spans of the trace after 20 s: {:?}",
            ours.iter().map(Got::name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let received = store.lock().unwrap();
    assert!(
        (received.content_types.iter()).all(|c| c == "application/x-protobuf"),
        "{:?}",
        received.content_types
    );
    drop(received);
    assert!(spans.iter().all(|s| s.service == "ragd"), "service.name");

    // One `request` span, the child of the caller's span, the one the
    // answer named.
    let requests: Vec<&Got> = spans.iter().filter(|s| s.name() == "request").collect();
    assert_eq!(requests.len(), 1, "{spans:#?}");
    let request = requests[0];
    assert_eq!(request.parent(), CALLER_SPAN);
    assert_eq!(request.id(), request_span_id);
    assert_eq!(request.text("path"), Some("/v1/chat/completions"));
    assert_eq!(request.text("trace_id"), Some(TRACE_ID));
    assert_eq!(request.span.trace_state, "caller=1");

    // Every span of the trace leads up to `request`.
    let by_id: HashMap<String, &Got> = spans.iter().map(|s| (s.id(), s)).collect();
    for s in &spans {
        let mut at = s;
        let mut hops = 0;
        while at.id() != request.id() {
            at = *by_id
                .get(&at.parent())
                .unwrap_or_else(|| panic!("{} ({}) has a parent outside the trace", s.name(), at.name()));
            hops += 1;
            assert!(hops < 16, "a parent loop at {}", s.name());
        }
    }

    let named = |name: &str| -> Vec<&Got> { spans.iter().filter(|s| s.name() == name).collect() };
    let one = |name: &str| -> &Got {
        let found = named(name);
        assert_eq!(found.len(), 1, "one `{name}` span: {spans:#?}");
        found[0]
    };
    let parent_name = |s: &Got| by_id[&s.parent()].name().to_string();

    // The edge's own stages: the key, then its rate limit.
    for edge in ["auth", "rate_limit"] {
        assert_eq!(one(edge).parent(), request.id(), "{edge}");
    }
    let chat = one("chat");
    assert_eq!(chat.parent(), request.id());
    assert_eq!(chat.text("tenant"), Some("default"));
    assert_eq!(chat.text("gen_ai.request.model"), Some(GEN));
    assert_eq!(chat.text("cache.hit"), Some("none"));
    assert_eq!(chat.int("gen_ai.usage.input_tokens"), Some(prompt_tokens));

    let guards = named("guard");
    let stages: Vec<&str> = guards.iter().filter_map(|g| g.text("stage")).collect();
    assert_eq!(guards.len(), 2, "{guards:#?}");
    assert!(
        stages.contains(&"input") && stages.contains(&"context"),
        "{stages:?}"
    );
    let input_guard = guards.iter().find(|g| g.text("stage") == Some("input")).unwrap();
    assert_eq!(input_guard.parent(), chat.id());

    let retrieve = one("retrieve");
    assert_eq!(retrieve.parent(), chat.id());
    assert_eq!(retrieve.int("rag.top_k"), Some(2));
    assert_eq!(retrieve.int("rag.chunks"), Some(2));
    assert_eq!(one("embed").parent(), retrieve.id());
    assert_eq!(one("search").parent(), retrieve.id());
    assert_eq!(one("search").int("hits"), Some(2));
    assert_eq!(one("prompt").parent(), chat.id());
    let cache = one("cache");
    assert_eq!(
        (cache.text("cache.kind"), parent_name(cache).as_str()),
        (Some("exact"), "chat")
    );

    let generate = one("generate");
    assert_eq!(parent_name(generate), "request");
    assert_eq!(generate.text("gen_ai.request.model"), Some(GEN));
    assert_eq!(generate.int("gen_ai.usage.input_tokens"), Some(prompt_tokens));
    // The engine's count: every token it sampled, the end-of-sequence
    // token that ends the answer too (the answer's usage leaves it out).
    let sampled = generate.int("gen_ai.usage.output_tokens").expect("output tokens");
    assert!(completion_tokens > 0);
    assert!(
        (completion_tokens..=completion_tokens + 1).contains(&sampled),
        "{sampled}"
    );
    assert!(generate.text("gen_ai.response.finish_reasons").is_some());
    for phase in ["queue", "prefill", "decode"] {
        assert_eq!(one(phase).parent(), generate.id(), "{phase}");
    }
    assert!(generate.duration_ms() >= one("decode").duration_ms());

    let mut out = String::new();
    tree(&spans, request, 0, &mut out);
    eprintln!("the trace of one RAG chat request:\n{out}");
}

/// A request ragd forwards to an upstream stays in the caller's trace: an
/// `upstream` span per attempt, and the upstream gets a `traceparent`
/// naming that span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_request_takes_its_trace_to_the_upstream() {
    const TRACE: &str = "5cf92f3577b34da6a3ce929d0e0e4737";
    std::env::set_var("RUST_LOG", "info,hnsw_rs=warn");
    let (_, store) = telemetry();
    let sent = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = sent.clone();
    let upstream = Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: HeaderMap| async move {
            let parent = headers.get("traceparent").and_then(|v| v.to_str().ok());
            seen.lock().unwrap().push(parent.unwrap_or("").to_string());
            axum::Json(json!({"id": "x", "object": "chat.completion", "created": 0, "model": "remote",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}))
        }),
    );
    let up = serve_on_own_thread(upstream);
    let (addr, _server) = start_on_own_thread(move |c| {
        no_models(c);
        c.upstreams = UpstreamsConfig {
            upstreams: vec![UpstreamSpec {
                name: "up".into(),
                url: format!("http://{up}"),
                key: None,
                key_file: None,
                models: Some(vec!["remote".into()]),
            }],
            ..UpstreamsConfig::default()
        };
    });
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({"model": "remote", "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-ragd-served-by"], "up");
    let forwarded = sent.lock().unwrap()[0].clone();
    let parts: Vec<&str> = forwarded.split('-').collect();
    assert_eq!((parts.len(), parts[1]), (4, TRACE), "{forwarded}");

    let deadline = Instant::now() + Duration::from_secs(20);
    let attempt = loop {
        tokio::task::spawn_blocking(|| telemetry().0.flush())
            .await
            .unwrap();
        let found = (store.lock().unwrap().spans.iter())
            .find(|s| hex(&s.span.trace_id) == TRACE && s.name() == "upstream")
            .cloned();
        if let Some(span) = found {
            break span;
        }
        assert!(Instant::now() < deadline, "no `upstream` span after 20 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The upstream's parent is the attempt's span.
    assert_eq!(attempt.id(), parts[2]);
    assert_eq!(attempt.text("upstream"), Some("up"));
    assert_eq!(attempt.text("outcome"), Some("answered"));
}
