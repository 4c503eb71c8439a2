//! Helpers shared by ragd's end-to-end tests and benchmarks.

pub mod lb_load;
pub mod nginx;
pub mod playground;
pub mod postgres;
pub mod scale_out;
pub mod webdriver;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use ragd_server::config::ServeConfig;
use ragd_server::serve::{self, RunningServer};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The program `name` on PATH; a failure saying `install` (how to get it)
/// when it is missing: tests that need a program fail without it, never skip.
pub fn tool_on_path(name: &str, install: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not on PATH: {install}"))
}

/// The models folder: `RAGD_MODELS_DIR`, else `models/cache`. Panics with the
/// fix when the default models are missing: a test must not pass without them.
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("RAGD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("models/cache"));
    for name in ["all-minilm-l6-v2", "nanoguard"] {
        assert!(
            dir.join(name).is_dir(),
            "model {name} missing in {}: run `models/fetch` first",
            dir.display()
        );
    }
    dir
}

/// The configuration of a test server: port 0, the test models folder,
/// single-user mode (`no_auth`) on 127.0.0.1, otherwise `ragd serve`'s
/// defaults. Set `data_dir` too: without one, the server uses the user's
/// default data folder.
pub fn test_config(models_dir: PathBuf) -> ServeConfig {
    let mut config = ServeConfig {
        port: 0,
        ..ServeConfig::default()
    };
    config.models.models_dir = models_dir;
    config.auth.no_auth = true;
    config
}

/// Where a test server keeps its collections. Collection, isolation and
/// durability tests run once per store: one suite, two stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// The in-memory store under the data folder (the default).
    Memory,
    /// A fresh Postgres with pgvector (`--store postgres://...`).
    Postgres,
}

impl StoreKind {
    /// The database this store needs, started (`None` for memory); keep it
    /// alive as long as the servers using it.
    pub fn start(self) -> Option<postgres::Postgres> {
        (self == Self::Postgres).then(postgres::Postgres::start)
    }
}

/// Points `config` at `pg` when there is one (else the data folder).
pub fn use_store(config: &mut ServeConfig, pg: Option<&postgres::Postgres>) {
    config.store = pg.map(|pg| ragd_server::config::Secret(pg.url()));
}

/// Runs each `async fn name(store: StoreKind)` as two tests,
/// `memory::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::StoreKind::Memory).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::StoreKind::Postgres).await
                }
            )*
        }
    };
}

/// Only the generator: for tests of generation endpoints.
pub fn generator_only(config: &mut ServeConfig) {
    config.models.embedder = "none".into();
    config.models.guards = vec![];
}

/// Turns the default models off where a test needs none of them.
pub fn no_models(config: &mut ServeConfig) {
    config.models.embedder = "none".into();
    config.models.guards = vec![];
    config.models.generator = "none".into();
}

/// A server with the default real models, started once per test binary on
/// its own runtime thread (each `#[tokio::test]` has a runtime that dies with
/// the test, so the shared server cannot live on one of them).
pub fn shared_server() -> SocketAddr {
    static SERVER: OnceLock<(SocketAddr, StopOnDrop)> = OnceLock::new();
    SERVER.get_or_init(|| start_on_own_thread(|_| {})).0
}

/// Starts a server configured by `configure` (on top of [`test_config`])
/// on its own runtime thread and waits until its models are loaded.
/// Returns its address and a handle that stops it when dropped. Without a
/// `data_dir`, the server gets a fresh temporary data folder, removed when
/// the handle drops.
pub fn start_on_own_thread(configure: impl FnOnce(&mut ServeConfig)) -> (SocketAddr, StopOnDrop) {
    let mut args = test_config(models_dir());
    configure(&mut args);
    let temp_data = args.data_dir.is_none().then(|| {
        tempfile::Builder::new()
            .prefix("ragd-test-data")
            .tempdir()
            .expect("temp dir")
    });
    if let Some(dir) = &temp_data {
        args.data_dir = Some(dir.path().to_path_buf());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut server: RunningServer = match serve::start(args).await {
                Ok(s) => s,
                Err(e) => return tx.send(Err(e)).expect("send"),
            };
            if let Err(e) = server.wait_ready().await {
                return tx.send(Err(e)).expect("send");
            }
            tx.send(Ok(server.addr)).expect("send");
            let _ = stop_rx.await;
            if let Err(e) = server.shutdown().await {
                eprintln!("test server shutdown failed: {e:#}");
            }
        });
    });
    let addr = rx.recv().expect("server thread").expect("server failed to start");
    let stop = StopOnDrop {
        stop: Some(stop_tx),
        thread: Some(thread),
        _data: temp_data,
    };
    (addr, stop)
}

/// Stops a test server when dropped.
pub struct StopOnDrop {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _data: Option<tempfile::TempDir>,
}

impl StopOnDrop {
    /// Stops the server gracefully and waits until it is gone (its data
    /// folder released), e.g. before starting another on the same folder.
    pub fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread panicked");
        }
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts a server in a child process: this test binary again, running
/// only the ignored test `child_test` (which does nothing in a normal test
/// run), with `envs` set; that test starts a server and calls
/// [`announce_listening`]. Returns the child and the server's base URL.
/// The child's later output is copied to stderr, so it never writes into
/// a closed pipe.
pub fn spawn_child_server(child_test: &str, envs: &[(&str, &str)]) -> (Child, String) {
    let (child, base, _) = spawn_child(child_test, envs, false);
    (child, base)
}

/// What a child server wrote to stderr so far, line by line.
pub type ChildLog = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// [`spawn_child_server`], also keeping the child's stderr (its log
/// lines) for the test to read, while still copying it to stderr.
pub fn spawn_child_server_with_log(child_test: &str, envs: &[(&str, &str)]) -> (Child, String, ChildLog) {
    spawn_child(child_test, envs, true)
}

fn spawn_child(child_test: &str, envs: &[(&str, &str)], keep_log: bool) -> (Child, String, ChildLog) {
    let log = ChildLog::default();
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            child_test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(if keep_log {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .spawn()
        .expect("start the child server");
    if let Some(stderr) = child.stderr.take() {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[child server] {line}");
                log.lock().expect("log lock").push(line);
            }
        });
    }
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    for line in lines.by_ref() {
        let line = line.expect("the child's stdout");
        // libtest writes "test child_server ... " on the same line first.
        if let Some((_, addr)) = line.split_once(LISTENING) {
            let base = format!("http://{}", addr.trim());
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    eprintln!("[child server] {line}");
                }
            });
            return (child, base, log);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the child server exited before listening");
}

const LISTENING: &str = "LISTENING ";

/// In a child server of [`spawn_child_server`]: runs `config` down the
/// same path as `ragd serve` (`start`, the models loaded, then
/// `run_until_signal` with its signal handling), telling the parent where
/// it listens once it is ready.
pub fn serve_as_child(config: ServeConfig) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut server = serve::start(config).await.expect("server starts");
        server.wait_ready().await.expect("models load");
        // Before the parent hears of it: its first SIGTERM may come at once.
        server.catch_signals().expect("signal handlers");
        announce_listening(server.addr);
        server.run_until_signal().await.expect("clean drain");
    });
}

/// In a child server of [`spawn_child_server`]: `ragd serve` with the
/// arguments (a JSON list) in the variable `args_env`, parsed and run as
/// `main.rs` runs them; nothing when the variable is unset (a normal test
/// run).
pub fn serve_args_from_env(args_env: &str) {
    use ragd_cli::cli::{Cli, Command as CliCommand};
    let Ok(args) = std::env::var(args_env) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).expect("arguments as JSON");
    ragd_cli::telemetry::init(ragd_cli::cli::LogFormat::Text);
    let argv = ["ragd".to_string(), "serve".to_string()].into_iter().chain(args);
    let command = <Cli as clap::Parser>::try_parse_from(argv)
        .expect("valid flags")
        .command;
    let CliCommand::Serve(serve_args) = command else {
        unreachable!("a serve command")
    };
    serve_as_child(serve_args.into_config().expect("a serve config"));
}

/// A `ragd serve` replica in a child process (this test binary again,
/// running only `child_test`, which calls [`serve_args_from_env`] with
/// `args_env`), its log kept; killed when dropped.
pub struct ServeReplica {
    pub child: Child,
    pub base: String,
    pub log: ChildLog,
}

impl ServeReplica {
    /// Starts `ragd serve ARGS` (with `RUST_LOG` from the environment, else
    /// `default_log`) and waits until it listens.
    pub fn spawn(child_test: &str, args_env: &str, args: &[String], default_log: &str) -> Self {
        let args = serde_json::to_string(args).expect("arguments as JSON");
        let log = std::env::var("RUST_LOG").unwrap_or_else(|_| default_log.into());
        let (child, base, log) =
            spawn_child_server_with_log(child_test, &[(args_env, &args), ("RUST_LOG", &log)]);
        Self { child, base, log }
    }
}

impl Drop for ServeReplica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In a child server of [`spawn_child_server`]: tells the parent where it
/// listens (straight to the pipe: libtest may capture `println!`).
pub fn announce_listening(addr: SocketAddr) {
    let mut out = std::io::stdout();
    writeln!(out, "{LISTENING}{addr}").expect("write to the parent");
    out.flush().expect("flush to the parent");
}

/// Reads one sample value from Prometheus text, e.g.
/// `metric_value(text, "ragd_batch_size_count", "model=\"x\"")`.
pub fn metric_value(text: &str, name: &str, label_fragment: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (metric, _) = l.split_once(' ').unwrap_or((l, ""));
            let base = metric.split('{').next().unwrap_or(metric);
            base == name && metric.contains(label_fragment)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `GET {base}{path}` as JSON, whatever the status.
pub async fn get_json(base: &str, path: &str) -> serde_json::Value {
    reqwest::get(format!("{base}{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `GET {base}{path}` as text, whatever the status.
pub async fn get_text(base: &str, path: &str) -> String {
    reqwest::get(format!("{base}{path}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `POST {base}{path}` with a JSON body, whatever the status.
pub async fn post_json(base: &str, path: &str, body: &serde_json::Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Runs `tests/python/{script}` against the server at `addr` with the test
/// Python (`RAGD_TEST_PYTHON`, which `scripts/test` sets up with `openai`
/// and `jsonschema`; else `python3`) and checks it succeeds and prints
/// `needle`.
pub fn run_python_check(addr: SocketAddr, script: &str, needle: &str) {
    let python = std::env::var("RAGD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = repo_root().join("tests/python").join(script);
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(format!("http://{addr}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{python} {} failed (are `openai` and `jsonschema` installed? run scripts/test):\n{stdout}\n{stderr}",
        script.display()
    );
    assert!(stdout.contains(needle), "{stdout}");
}

/// Asserts a 4xx answer in OpenAI's error shape: a non-empty `message`, a
/// `type`, and `param` and `code` present. Returns the error object.
pub fn assert_openai_error<'a>(
    what: &str,
    status: reqwest::StatusCode,
    body: &'a serde_json::Value,
) -> &'a serde_json::Value {
    assert!(status.is_client_error(), "{what}: {status} {body}");
    let err = &body["error"];
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    assert!(err["type"].is_string(), "{what}: {body}");
    assert!(
        err.get("param").is_some() && err.get("code").is_some(),
        "{what}: {body}"
    );
    err
}

/// Serves `app` on a free loopback port from its own runtime thread (a
/// test's stand-in for another service: an upstream, an OTLP receiver);
/// returns the address. The thread lives as long as the test binary.
pub fn serve_on_own_thread(app: axum::Router) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("address")).expect("send");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    rx.recv().expect("the service thread")
}

/// Sixteen short chat prompts, each different: the batch-invariance tests
/// send them one by one, then all at once.
pub fn sixteen_prompts() -> Vec<String> {
    (0..16)
        .map(|i| match i % 4 {
            0 => format!("Count from {i} to {}.", i + 5),
            1 => format!(
                "Name a fruit that starts with the letter {}.",
                (b'a' + i as u8) as char
            ),
            2 => format!("Write one sentence about the number {i}."),
            _ => format!("Translate 'good morning' into language number {i} you know."),
        })
        .collect()
}

/// Fails unless the server at `base` ran some generation step with more
/// than one sequence (so a batch-invariance test really batched).
pub async fn assert_steps_were_batched(base: &str) {
    let metrics = get_text(base, "/metrics").await;
    let batches = metric_value(&metrics, "ragd_generation_batch_size_count", "").unwrap();
    let seqs = metric_value(&metrics, "ragd_generation_batch_size_sum", "").unwrap();
    assert!(
        seqs / batches > 1.0,
        "no step ran more than one sequence: {seqs} / {batches}"
    );
}

/// Waits for `ragd_kv_blocks_used` to return to 0.
pub async fn assert_blocks_return_to_idle(base: &str, after: &str) {
    let mut used = f64::NAN;
    for _ in 0..100 {
        let m = get_text(base, "/metrics").await;
        used = metric_value(&m, "ragd_kv_blocks_used", "").unwrap();
        if used == 0.0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{used} KV blocks still held {after}");
}
