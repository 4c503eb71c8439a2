//! Pieces of the scale-out tests (`redis_scale_out`, `scale_out_nginx`):
//! a real `redis-server` on loopback, `ragd serve` replicas as child
//! processes of the test binary, a keys file, free ports.
//!
//! A test binary that spawns replicas has an ignored test named
//! [`REPLICA_TEST`] whose body is [`serve_replica_from_env`]: the child
//! process runs only that test, which parses the `ragd serve` command line
//! handed over in [`ARGS_ENV`] and serves as the binary does.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use rustix::process::{kill_process, Pid, Signal};
use serde_json::{json, Value};

use crate::{metric_value, ChildLog};

/// The ignored test of each scale-out binary that runs one replica.
pub const REPLICA_TEST: &str = "replica";
/// The variable that tells the child test its `ragd serve` arguments.
pub const ARGS_ENV: &str = "RAGD_SCALE_OUT_REPLICA_ARGS";

/// In the child: `ragd serve` with the arguments in [`ARGS_ENV`], as
/// `main.rs` runs it; nothing when the variable is unset (a normal run of
/// the ignored tests).
pub fn serve_replica_from_env() {
    let Ok(args) = std::env::var(ARGS_ENV) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).expect("arguments as JSON");
    ragd_cli::telemetry::init(ragd_cli::cli::LogFormat::Text);
    let argv = ["ragd".to_string(), "serve".to_string()].into_iter().chain(args);
    let cli = <ragd_cli::cli::Cli as clap::Parser>::try_parse_from(argv).expect("valid flags");
    let ragd_cli::cli::Command::Serve(serve_args) = cli.command else {
        unreachable!("a serve command")
    };
    crate::serve_as_child(serve_args.into_config().expect("a serve config"));
}

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("its address")
        .port()
}

/// An API key of a keys file: its secret, id and tenant.
pub type TestKey<'a> = (&'a str, &'a str, &'a str);

/// Writes a JSON keys file (`--keys-file`) holding `keys`.
pub fn write_keys(path: &Path, keys: &[TestKey]) {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(secret, id, tenant)| {
            json!({"id": id, "tenant": tenant, "prefix": &secret[..8],
                   "sha256": ragd_server::auth::keys::hash_key(secret), "created": 0})
        })
        .collect();
    std::fs::write(path, json!({ "keys": keys }).to_string()).expect("write the keys file");
}

/// `ragd serve` arguments of a replica on 127.0.0.1 at `port` (0: any)
/// with the test models, `keys` and its own `data` folder, then `extra`.
pub fn replica_args(port: u16, keys: &Path, data: &Path, extra: &[&str]) -> Vec<String> {
    let fixed = [
        "--host".to_string(),
        "127.0.0.1".into(),
        "--port".into(),
        port.to_string(),
        "--no-ui".into(),
        "--keys-file".into(),
        keys.display().to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--models-dir".into(),
        crate::models_dir().display().to_string(),
    ];
    fixed
        .into_iter()
        .chain(extra.iter().map(|s| s.to_string()))
        .collect()
}

const REDIS_INSTALL: &str = "install Redis with `apt-get install redis-server` (it brings redis-cli); \
                             this test needs it and does not skip";

/// A `redis-server` on loopback with its own folder, no persistence;
/// killed when dropped.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts it on `port` and waits until it answers PING.
    pub fn start(dir: &Path, port: u16) -> Self {
        let server = crate::tool_on_path("redis-server", REDIS_INSTALL);
        let child = Command::new(server)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
            .args(["--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"])
            .args(["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let redis = Self {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        let t0 = Instant::now();
        while redis.cli(&["PING"]) != "PONG" {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis-cli` output (empty when Redis does not answer).
    pub fn cli(&self, args: &[&str]) -> String {
        let cli = crate::tool_on_path("redis-cli", REDIS_INSTALL);
        let out = Command::new(cli)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn signal(&self, signal: Signal) {
        kill_process(Pid::from_child(&self.child), signal).expect("signal redis-server");
    }

    /// Kills it (SIGKILL, no goodbye to clients) and waits for the exit;
    /// returns its port and folder for a restart.
    pub fn kill(mut self) -> (u16, PathBuf) {
        self.signal(Signal::KILL);
        self.child.wait().expect("wait for redis-server");
        (self.port, self.dir.clone())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A replica process (the binary's [`REPLICA_TEST`]), killed when dropped.
pub struct Replica {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: ChildLog,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    /// Starts `ragd serve args` and waits until its models are loaded.
    pub fn spawn(args: &[String]) -> Self {
        Self::spawn_with_env(args, &[])
    }

    /// [`Replica::spawn`] with variables `env` set (`RAGD_*` ones set flags).
    pub fn spawn_with_env(args: &[String], env: &[(String, String)]) -> Self {
        let args = serde_json::to_string(args).expect("arguments as JSON");
        let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,ragd_server::shared=info".into());
        let mut vars = vec![(ARGS_ENV, args.as_str()), ("RUST_LOG", log.as_str())];
        vars.extend(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let (child, base, log) = crate::spawn_child_server_with_log(REPLICA_TEST, &vars);
        Self { child, base, log }
    }

    /// `127.0.0.1:PORT`, as a load balancer names it.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// SIGKILL (no drain, no checkpoint), and waits for the exit.
    pub fn kill(mut self) {
        kill_process(Pid::from_child(&self.child), Signal::KILL).expect("SIGKILL the replica");
        self.child.wait().expect("wait for the replica");
    }

    /// SIGTERM (ragd drains, checkpoints and exits); waits for the exit
    /// and asserts it was clean.
    pub fn terminate(mut self) {
        kill_process(Pid::from_child(&self.child), Signal::TERM).expect("SIGTERM the replica");
        let status = self.child.wait().expect("wait for the replica");
        assert!(status.success(), "{} after SIGTERM: {status}", self.base);
    }

    /// One sample of its `/metrics`; panics when missing.
    pub fn metric(&self, http: &Client, name: &str, labels: &str) -> f64 {
        let text = http
            .get(format!("{}/metrics", self.base))
            .send()
            .expect("GET /metrics")
            .text()
            .expect("metrics text");
        metric_value(&text, name, labels).unwrap_or_else(|| panic!("{name}{{{labels}}} missing"))
    }

    /// Asserts that `n` log lines contain `needle` (waiting a little for
    /// the child's stderr to be read).
    pub fn assert_logged(&self, needle: &str, n: usize) {
        let count = || {
            self.log
                .lock()
                .expect("log lock")
                .iter()
                .filter(|l| l.contains(needle))
                .count()
        };
        let t0 = Instant::now();
        while count() < n && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(count(), n, "log lines with {needle:?} of {}", self.base);
    }
}

/// Waits until every replica's `ragd_redis_up` is `up`.
pub fn wait_redis_up(http: &Client, replicas: &[Replica], up: f64) {
    let t0 = Instant::now();
    while !replicas.iter().all(|r| r.metric(http, "ragd_redis_up", "") == up) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "ragd_redis_up never became {up}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
