//! Helpers shared by ragd's end-to-end tests and benchmarks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use ragd_server::serve::{self, RunningServer};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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

mod serve_args_from_flags {
    use std::path::PathBuf;

    use clap::Parser;
    use ragd_server::cli::{Cli, Command, ServeArgs};

    /// `ServeArgs` as `ragd serve` would parse them from `extra` flags, with
    /// port 0 and the test models folder. Unless `extra` configures keys
    /// (`--keys-file`, `--admin-key-file`, `--admin-key`) or says
    /// `--no-auth` itself, the server runs in single-user mode (`--no-auth`,
    /// on 127.0.0.1). Give `--data-dir` too: without one, the parsed args
    /// name the user's default data folder.
    pub fn serve_args(models_dir: PathBuf, extra: &[&str]) -> ServeArgs {
        let dir = models_dir.display().to_string();
        let mut argv = vec!["ragd", "serve", "--port", "0", "--models-dir", &dir];
        let keyed = ["--keys-file", "--admin-key-file", "--admin-key", "--no-auth"];
        if !extra.iter().any(|a| keyed.contains(a)) {
            argv.push("--no-auth");
        }
        argv.extend_from_slice(extra);
        match Cli::parse_from(argv).command {
            Command::Serve(a) => *a,
            _ => unreachable!("parsed a serve command"),
        }
    }
}

pub use serve_args_from_flags::serve_args;

/// A server with the default real models, started once per test binary on
/// its own runtime thread (each `#[tokio::test]` has a runtime that dies with
/// the test, so the shared server cannot live on one of them).
pub fn shared_server() -> SocketAddr {
    static SERVER: OnceLock<(SocketAddr, StopOnDrop)> = OnceLock::new();
    SERVER.get_or_init(|| start_on_own_thread(&[])).0
}

/// Starts a server with extra `ragd serve` flags on its own runtime thread
/// and waits until its models are loaded. Returns its address and a handle
/// that stops it when dropped. Without `--data-dir` in `extra`, the server
/// gets a fresh temporary data folder, removed when the handle drops.
pub fn start_on_own_thread(extra: &[&str]) -> (SocketAddr, StopOnDrop) {
    let temp_data = (!extra.contains(&"--data-dir")).then(|| {
        tempfile::Builder::new()
            .prefix("ragd-test-data")
            .tempdir()
            .expect("temp dir")
    });
    let data_dir = temp_data.as_ref().map(|d| d.path().display().to_string());
    let mut flags = extra.to_vec();
    if let Some(dir) = &data_dir {
        flags.extend(["--data-dir", dir]);
    }
    let args = serve_args(models_dir(), &flags);
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
