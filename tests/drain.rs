//! Graceful drain of a real process: SIGTERM while 16 chat completions
//! stream. `/ready` turns 503 at once, a new request gets 503 with
//! `Retry-After` in OpenAI's error shape, every stream still ends with its
//! full token count and `data: [DONE]`, the process exits 0 well within the
//! grace period, and the knowledge base reopens with what was written. A
//! second SIGTERM during a drain exits at once, and the store still reopens
//! clean. Streams still running when the grace period ends are cut, and
//! the process still checkpoints and exits 0.
//!
//! The server runs in a child process (this test binary again, with only
//! the ignored `drain_child_server` test) down the same path as `ragd
//! serve`: `start`, then `run_until_signal` with its signal handling.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rustix::process::{kill_process, Pid, Signal};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const DATA_ENV: &str = "RAGD_DRAIN_CHILD_DATA_DIR";
const GRACE_ENV: &str = "RAGD_DRAIN_CHILD_GRACE_SECONDS";
/// `--shutdown-grace-seconds` of the child, unless a test sets another.
const GRACE: Duration = Duration::from_secs(60);
const GEN: &str = "smollm2-135m-instruct-q4_1";
const STREAMS: usize = 16;
const MAX_TOKENS: u64 = 48;

/// The server of the child process (does nothing in a normal test run).
#[test]
#[ignore = "started by the drain tests in a child process"]
fn drain_child_server() {
    let Ok(dir) = std::env::var(DATA_ENV) else {
        return;
    };
    ragd_cli::telemetry::init(ragd_cli::cli::LogFormat::Text);
    let mut config = ragd_suite::test_config(ragd_suite::models_dir());
    config.data_dir = Some(dir.into());
    config.models.guards = vec![];
    config.shutdown_grace = std::env::var(GRACE_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(GRACE, Duration::from_secs);
    // As `ragd serve` runs it (main.rs).
    ragd_suite::serve_as_child(config);
}

/// A child server; killed when dropped, so a failing test leaves none behind.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts one on `dir` and waits until its models are loaded.
    fn spawn(dir: &str) -> Self {
        Self::spawn_with_grace(dir, GRACE)
    }

    fn spawn_with_grace(dir: &str, grace: Duration) -> Self {
        let grace = grace.as_secs().to_string();
        let (child, base) = tokio::task::block_in_place(|| {
            // The drain's own lines, unless RUST_LOG asks for more.
            let log = std::env::var("RUST_LOG")
                .unwrap_or_else(|_| "warn,ragd_server::serve=info,ragd_server::http_server=info".into());
            ragd_suite::spawn_child_server(
                "drain_child_server",
                &[(DATA_ENV, dir), (GRACE_ENV, &grace), ("RUST_LOG", &log)],
            )
        });
        Self { child, base }
    }

    fn sigterm(&self) {
        kill_process(Pid::from_child(&self.child), Signal::TERM).expect("send SIGTERM");
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().expect("wait for the child").is_none()
    }

    /// Waits (at most `limit`) for the process to exit.
    async fn exit_status(&mut self, limit: Duration) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                return status;
            }
            assert!(t0.elapsed() < limit, "the server did not exit within {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A client that opens a fresh connection for every request.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

async fn post_ok(client: &reqwest::Client, url: String, body: Value) -> Value {
    let resp = client.post(&url).json(&body).send().await.unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

fn doc_text(i: usize) -> String {
    format!(
        "Drain note {i}: the lighthouse keeper logged {} ships at dawn.",
        i * 3 + 1
    )
}

/// Creates the collection `notes` and upserts `n` documents, each
/// acknowledged (200) before the next.
async fn write_notes(base: &str, n: usize) {
    let client = fresh_client();
    post_ok(
        &client,
        format!("{base}/v1/collections"),
        json!({"name": "notes"}),
    )
    .await;
    for i in 0..n {
        let doc = json!({"id": format!("note-{i}"), "text": doc_text(i)});
        post_ok(
            &client,
            format!("{base}/v1/collections/notes/documents"),
            json!({"documents": [doc]}),
        )
        .await;
    }
}

/// The shutdown checkpoint ran: the collection has a snapshot and an
/// empty log.
fn assert_checkpointed(dir: &str) {
    let collection = std::path::Path::new(dir).join("tenants/default/notes");
    assert!(
        collection.join("snapshot.bin").is_file(),
        "no snapshot in {collection:?}"
    );
    let wal = std::fs::metadata(collection.join("wal.log")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the log was not emptied by a checkpoint");
}

/// Restarts a server on `dir` and checks the `n` notes are there, intact.
async fn check_notes_after_restart(dir: &str, n: usize) {
    let mut server = Server::spawn(dir);
    let base = server.base.clone();
    let client = fresh_client();
    for i in 0..n {
        let resp = client
            .get(format!("{base}/v1/collections/notes/documents/note-{i}"))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let doc: Value = resp.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "note-{i} after restart: {doc}");
        assert_eq!(doc["chunks"], json!([doc_text(i)]), "note-{i} after restart");
    }
    let info: Value = client
        .get(format!("{base}/v1/collections/notes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["documents"], n, "{info}");
    // An idle server drains at once.
    let t0 = Instant::now();
    server.sigterm();
    let status = server.exit_status(GRACE).await;
    eprintln!(
        "drain: idle restarted server exited {status} {:?} after SIGTERM",
        t0.elapsed()
    );
    assert_eq!(status.code(), Some(0));
}

/// What one stream received: its `data:` payloads, and how it ended.
struct Streamed {
    events: Vec<String>,
    error: Option<String>,
    ended_at: Instant,
}

impl Streamed {
    fn done(&self) -> bool {
        self.error.is_none() && self.events.last().is_some_and(|e| e == "[DONE]")
    }

    fn completion_tokens(&self) -> Option<u64> {
        self.events
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .find_map(|v| v["usage"]["completion_tokens"].as_u64())
    }
}

/// Streams one chat completion of `max_tokens` (`ignore_eos`); sends its
/// index on `started` once the first token's chunk arrived.
async fn stream_chat(
    base: String,
    i: usize,
    max_tokens: u64,
    started: mpsc::UnboundedSender<usize>,
) -> Streamed {
    let body = json!({
        "model": GEN,
        "messages": [{"role": "user", "content": format!("Tell me a long story about harbour number {i}.")}],
        "max_tokens": max_tokens,
        "ignore_eos": true,
        "temperature": 0,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let mut resp = fresh_client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "stream {i}");
    let (mut buf, mut events, mut told) = (Vec::<u8>::new(), Vec::new(), false);
    let error = loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => buf.extend_from_slice(&bytes),
            Ok(None) => break None,
            Err(e) => break Some(e.to_string()),
        }
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event = String::from_utf8(buf.drain(..end + 2).collect()).unwrap();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                events.push(data.to_string());
            }
        }
        // The first event is the role; the second carries the first token.
        if !told && events.len() >= 2 {
            told = true;
            let _ = started.send(i);
        }
    };
    Streamed {
        events,
        error,
        ended_at: Instant::now(),
    }
}

/// Opens `n` streams and waits until each has its first token.
async fn open_streams(base: &str, n: usize, max_tokens: u64) -> Vec<tokio::task::JoinHandle<Streamed>> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let streams: Vec<_> = (0..n)
        .map(|i| tokio::spawn(stream_chat(base.to_string(), i, max_tokens, tx.clone())))
        .collect();
    drop(tx);
    let t0 = Instant::now();
    for _ in 0..n {
        let started = tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .expect("every stream starts within 2 minutes");
        if started.is_none() {
            // Every stream task ended: one failed; show why.
            for s in streams {
                s.await.unwrap();
            }
            panic!("the streams ended before their first tokens");
        }
    }
    eprintln!(
        "drain: {n} streams have their first token after {:?}",
        t0.elapsed()
    );
    streams
}

/// Polls `/ready` until it answers 503 (the signal is handled
/// asynchronously); returns its body.
async fn wait_not_ready(base: &str) -> Value {
    let client = fresh_client();
    let t0 = Instant::now();
    loop {
        let resp = client.get(format!("{base}/ready")).send().await.unwrap();
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            eprintln!("drain: /ready 503 {:?} after SIGTERM", t0.elapsed());
            return resp.json().await.unwrap();
        }
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(t0.elapsed() < Duration::from_secs(5), "/ready still 200");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A 503 `shutting_down` in OpenAI's error shape, with `Retry-After`,
/// closing its connection.
async fn assert_refused_while_draining(refused: reqwest::Response) {
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let header = |name: &str| {
        refused
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(header("retry-after").as_deref(), Some("5"));
    assert_eq!(header("connection").as_deref(), Some("close"));
    let body: Value = refused.json().await.unwrap();
    let err = &body["error"];
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(err["type"], "server_error", "{body}");
    assert_eq!(err["code"], "shutting_down", "{body}");
    assert!(err.get("param").is_some(), "{body}");
}

/// A server on a fresh data folder, with `notes` written; the folder
/// lives as long as the returned `TempDir`.
async fn server_with_notes(grace: Duration, notes: usize) -> (tempfile::TempDir, String, Server) {
    let data = tempfile::Builder::new().prefix("ragd-drain").tempdir().unwrap();
    let dir = data.path().display().to_string();
    let server = Server::spawn_with_grace(&dir, grace);
    write_notes(&server.base, notes).await;
    (data, dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_running_streams_refuses_new_requests_and_exits_zero() {
    let (_data, dir, mut server) = server_with_notes(GRACE, 1).await;
    let base = server.base.clone();
    // A kept-alive connection, idle when the drain starts.
    let kept_alive = reqwest::Client::new();
    let models = kept_alive.get(format!("{base}/v1/models")).send().await.unwrap();
    assert_eq!(models.status(), StatusCode::OK);
    models.bytes().await.unwrap();

    let streams = open_streams(&base, STREAMS, MAX_TOKENS).await;
    let signalled = Instant::now();
    server.sigterm();

    let ready = wait_not_ready(&base).await;
    assert_eq!(ready["status"], "draining", "{ready}");
    let client = fresh_client();
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "liveness holds during the drain");

    // A new connection, and the idle kept-alive one: both refused, closed.
    for c in [&client, &kept_alive] {
        let refused = c
            .post(format!("{base}/v1/chat/completions"))
            .json(&json!({"model": GEN, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}))
            .send()
            .await
            .unwrap();
        assert_refused_while_draining(refused).await;
    }
    let refused_after = signalled.elapsed();
    let upsert = client
        .post(format!("{base}/v1/collections/notes/documents"))
        .json(&json!({"documents": [{"id": "late", "text": "too late"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        upsert.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "writes are refused too"
    );

    let mut last_done = Duration::ZERO;
    for (i, stream) in streams.into_iter().enumerate() {
        let s = stream.await.unwrap();
        assert!(
            s.done(),
            "stream {i} did not end with [DONE] ({:?}): {:?}",
            s.error,
            s.events.last()
        );
        assert_eq!(s.completion_tokens(), Some(MAX_TOKENS), "stream {i}");
        last_done = last_done.max(s.ended_at.duration_since(signalled));
    }
    let status = server.exit_status(GRACE + Duration::from_secs(30)).await;
    let exited = signalled.elapsed();
    eprintln!(
        "drain: new request refused {refused_after:?}, all {STREAMS} streams done {last_done:?}, \
         process exited ({status}) {exited:?} after SIGTERM (grace {GRACE:?})"
    );
    assert_eq!(status.code(), Some(0), "a drained server exits 0");
    assert!(
        exited < GRACE / 2,
        "the drain took {exited:?}: it should end when the streams do, not at the grace period"
    );
    assert_checkpointed(&dir);

    check_notes_after_restart(&dir, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_sigterm_during_the_drain_exits_at_once_and_the_store_reopens_clean() {
    const NOTES: usize = 5;
    let (_data, dir, mut server) = server_with_notes(GRACE, NOTES).await;
    let base = server.base.clone();

    // Streams far longer than the test waits: the drain would last.
    let streams = open_streams(&base, 4, 1500).await;
    server.sigterm();
    wait_not_ready(&base).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(server.running(), "the drain waits for the streams");
    let second = Instant::now();
    server.sigterm();
    let status = server.exit_status(GRACE).await;
    let exited = second.elapsed();
    eprintln!("drain: second SIGTERM: exited ({status}) {exited:?} after it");
    assert_eq!(status.code(), Some(143), "cut short by SIGTERM: 128 + 15");
    assert!(exited < Duration::from_secs(5), "took {exited:?}");
    for (i, stream) in streams.into_iter().enumerate() {
        let s = stream.await.unwrap();
        assert!(!s.done(), "stream {i} cannot have finished 1500 tokens");
    }

    check_notes_after_restart(&dir, NOTES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_the_grace_period_what_is_left_is_cut_and_the_process_exits_zero() {
    let grace = Duration::from_secs(2);
    let (_data, dir, mut server) = server_with_notes(grace, 3).await;

    let streams = open_streams(&server.base, 4, 1500).await;
    let signalled = Instant::now();
    server.sigterm();
    let status = server.exit_status(GRACE).await;
    let exited = signalled.elapsed();
    eprintln!("drain: grace {grace:?} over: exited ({status}) {exited:?} after SIGTERM");
    assert_eq!(
        status.code(),
        Some(0),
        "the end of the grace period is still a clean exit"
    );
    assert!(
        exited >= grace,
        "exited after {exited:?}, before the grace period"
    );
    assert!(exited < grace + Duration::from_secs(10), "took {exited:?}");
    for (i, stream) in streams.into_iter().enumerate() {
        let s = stream.await.unwrap();
        assert!(!s.done(), "stream {i} was cut, not finished");
    }
    assert_checkpointed(&dir);

    check_notes_after_restart(&dir, 3).await;
}
