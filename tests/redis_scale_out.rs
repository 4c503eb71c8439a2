//! Scale-out through Redis (`ragd serve --redis-url`), proven with a real
//! `redis-server` on loopback (its own port and folder) and three real
//! replicas (child processes of this test binary, each parsing a `ragd
//! serve` command line and running it as the binary does):
//!
//! 1. a key's rate limit holds across replicas: requests spread round
//!    robin get exactly the limit accepted in total, the rest 429 with
//!    `Retry-After` in OpenAI's error shape;
//! 2. the exact cache is shared: an answer generated on one replica is a
//!    hit on another, never for another tenant; entries are namespaced by
//!    tenant and model and carry the TTL;
//! 3. a hung Redis (SIGSTOP) delays a request by at most its timeout;
//! 4. with Redis killed, nothing fails: limits are per process, the cache
//!    local, and `ragd_redis_up`, `ragd_redis_errors_total` and a warning
//!    say so;
//! 5. Redis restarted on its port: the replicas use it again.
//!
//! Needs `redis-server` and `redis-cli` on PATH (`apt-get install
//! redis-server`): without them the test fails, it does not skip.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ragd_suite::metric_value;
use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;
use rustix::process::{kill_process, Pid, Signal};
use serde_json::{json, Value};

const GEN: &str = "smollm2-135m-instruct-q4_1";
/// Requests per minute of every key: one every 6 s.
const RPM: usize = 10;
const CACHE_TTL_SECONDS: u64 = 300;
const REPLICAS: usize = 3;
/// The variable that tells the child test its `ragd serve` arguments.
const ARGS_ENV: &str = "RAGD_REDIS_REPLICA_ARGS";

/// API keys: (secret, id, tenant). Each phase spends its own key's budget.
const LIMITS: (&str, &str, &str) = ("rk-acme-limits", "key_acme_limits", "acme");
const ACME: (&str, &str, &str) = ("rk-acme-chat", "key_acme_chat", "acme");
const GLOBEX: (&str, &str, &str) = ("rk-globex-chat", "key_globex_chat", "globex");
const HUNG: (&str, &str, &str) = ("rk-acme-hung", "key_acme_hung", "acme");
const OUTAGE: (&str, &str, &str) = ("rk-acme-outage", "key_acme_outage", "acme");
const AFTER: (&str, &str, &str) = ("rk-acme-after", "key_acme_after", "acme");

/// A replica (does nothing in a normal test run): `ragd serve` with the
/// arguments in [`ARGS_ENV`], as `main.rs` runs it.
#[test]
#[ignore = "started by the scale-out test in a child process"]
fn redis_replica() {
    ragd_suite::serve_args_from_env(ARGS_ENV);
}

/// A `redis-server` on loopback with its own folder, no persistence.
struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    fn start(dir: &Path, port: u16) -> Self {
        let server = ragd_suite::tool_on_path("redis-server", INSTALL);
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

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis-cli` output (empty when Redis does not answer).
    fn cli(&self, args: &[&str]) -> String {
        let cli = ragd_suite::tool_on_path("redis-cli", INSTALL);
        let out = Command::new(cli)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn signal(&self, signal: Signal) {
        kill_process(Pid::from_child(&self.child), signal).expect("signal redis-server");
    }

    /// Kills it (SIGKILL, no goodbye to clients) and waits for the exit.
    fn kill(mut self) -> (u16, PathBuf) {
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

const INSTALL: &str = "install Redis with `apt-get install redis-server` (it brings redis-cli); \
                       this test needs it and does not skip";

/// A replica process, killed when dropped.
struct Replica(ragd_suite::ServeReplica);

impl std::ops::Deref for Replica {
    type Target = ragd_suite::ServeReplica;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Replica {
    fn spawn(args: &[String]) -> Self {
        let log = "warn,ragd_server::shared=info";
        Self(ragd_suite::ServeReplica::spawn(
            "redis_replica",
            ARGS_ENV,
            args,
            log,
        ))
    }

    fn metric(&self, http: &Client, name: &str, labels: &str) -> f64 {
        let text = http
            .get(format!("{}/metrics", self.base))
            .send()
            .unwrap()
            .text()
            .unwrap();
        metric_value(&text, name, labels).unwrap_or_else(|| panic!("{name}{{{labels}}} missing"))
    }

    /// Asserts that `n` log lines contain `needle` (waiting a little for
    /// the child's stderr to be read).
    fn assert_logged(&self, needle: &str, n: usize) {
        let count = || {
            self.log
                .lock()
                .unwrap()
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_keys(path: &Path) {
    let keys: Vec<Value> = [LIMITS, ACME, GLOBEX, HUNG, OUTAGE, AFTER]
        .iter()
        .map(|(secret, id, tenant)| {
            json!({"id": id, "tenant": tenant, "prefix": &secret[..8],
                   "sha256": ragd_server::auth::keys::hash_key(secret), "created": 0})
        })
        .collect();
    std::fs::write(path, json!({ "keys": keys }).to_string()).unwrap();
}

fn models(http: &Client, base: &str, key: &str) -> Response {
    http.get(format!("{base}/v1/models"))
        .bearer_auth(key)
        .send()
        .unwrap()
}

/// A greedy (cacheable) chat completion of `question` on `base` with
/// `key`; asserts a 200 whose `x-ragd-cache` is `expect`. Returns the body.
fn chat(http: &Client, base: &str, key: &str, question: &str, expect: &str) -> Value {
    let body = json!({"model": GEN, "max_tokens": 8, "temperature": 0,
                      "messages": [{"role": "user", "content": question}]});
    let r = (http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body))
    .send()
    .unwrap();
    let status = r.status();
    let cache = r
        .headers()
        .get("x-ragd-cache")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = r.json().unwrap();
    assert_eq!(
        (status, cache.as_deref()),
        (StatusCode::OK, Some(expect)),
        "{question:?} on {base}: {body}"
    );
    body
}

/// Sends `rounds` requests with `key` to each replica in turn; returns the
/// accepted count per replica, after checking every refusal.
fn round_robin(http: &Client, replicas: &[Replica], key: &str, rounds: usize) -> Vec<usize> {
    let mut accepted = vec![0; replicas.len()];
    for i in 0..rounds * replicas.len() {
        let r = models(http, &replicas[i % replicas.len()].base, key);
        let status = r.status();
        if status == StatusCode::OK {
            accepted[i % replicas.len()] += 1;
            continue;
        }
        let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60 / RPM as u64).contains(&retry), "Retry-After {retry}");
        let body: Value = r.json().unwrap();
        let err = ragd_suite::assert_openai_error("over the limit", status, &body);
        assert_eq!(
            (status, &err["code"]),
            (StatusCode::TOO_MANY_REQUESTS, &json!("rate_limit_exceeded"))
        );
    }
    accepted
}

/// The most requests a key may make in `elapsed`: its burst, plus one per
/// refill interval that passed (none when the test ran at speed).
fn budget(elapsed: Duration) -> usize {
    RPM + (elapsed.as_secs_f64() / (60.0 / RPM as f64)) as usize
}

/// Waits until every replica's `ragd_redis_up` is `up`.
fn wait_redis_up(http: &Client, replicas: &[Replica], up: f64) {
    let t0 = Instant::now();
    while !replicas.iter().all(|r| r.metric(http, "ragd_redis_up", "") == up) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "ragd_redis_up never became {up}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn replicas_share_limits_and_the_exact_cache_through_redis_and_outlive_its_outage() {
    let dir = tempfile::tempdir().unwrap();
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir(&redis_dir).unwrap();
    let redis = RedisServer::start(&redis_dir, free_port());
    let keys = dir.path().join("keys.json");
    write_keys(&keys);
    let replicas: Vec<Replica> = (0..REPLICAS)
        .map(|i| {
            let data = dir.path().join(format!("data{i}"));
            let args: Vec<String> = [
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--guard",
                "none",
                "--embedder",
                "none",
                "--generator",
                GEN,
                "--no-ui",
                "--rate-limit-rpm",
                &RPM.to_string(),
                "--response-cache-ttl-seconds",
                &CACHE_TTL_SECONDS.to_string(),
                "--redis-url",
                &redis.url(),
                "--redis-timeout-ms",
                "100",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain(["--keys-file".into(), keys.display().to_string()])
            .chain(["--data-dir".into(), data.display().to_string()])
            .chain([
                "--models-dir".into(),
                ragd_suite::models_dir().display().to_string(),
            ])
            .collect();
            Replica::spawn(&args)
        })
        .collect();
    let http = Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    wait_redis_up(&http, &replicas, 1.0);
    replicas
        .iter()
        .for_each(|r| r.assert_logged("redis connected", 1));

    // 1. One budget across the replicas.
    let t0 = Instant::now();
    let accepted = round_robin(&http, &replicas, LIMITS.0, RPM);
    let total: usize = accepted.iter().sum();
    assert!(
        total >= RPM && total <= budget(t0.elapsed()),
        "{accepted:?} accepted"
    );
    assert!(
        accepted.iter().all(|&n| n > 0),
        "every replica served some: {accepted:?}"
    );
    assert!(total < RPM * REPLICAS, "not a budget per replica: {accepted:?}");
    let ttl: i64 = redis.cli(&["PTTL", "ragd:rl:key_acme_limits"]).parse().unwrap();
    assert!(
        ttl > 0 && ttl <= 60_000,
        "the budget's state expires when full again: {ttl}"
    );

    // 2. The exact cache: generated on replica 0, a hit on replica 1; the
    // same question from another tenant is its own entry.
    let (a, b, c) = (&replicas[0].base, &replicas[1].base, &replicas[2].base);
    let question = "Name one colour.";
    let first = chat(&http, a, ACME.0, question, "miss");
    let again = chat(&http, b, ACME.0, question, "hit");
    assert_eq!(again["choices"], first["choices"]);
    assert_ne!(again["id"], first["id"], "a hit is a new response");
    assert_eq!(
        replicas[1].metric(&http, "ragd_response_cache_shared_lookups_total", "hit"),
        1.0
    );
    // Another tenant asking the very same: its own entry.
    chat(&http, c, GLOBEX.0, question, "miss");
    let entries = redis.cli(&["--scan", "--pattern", "ragd:cache:*"]);
    let entries: Vec<&str> = entries.lines().collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    for tenant in ["acme", "globex"] {
        let prefix = format!("ragd:cache:{tenant}:{GEN}:");
        let entry = entries.iter().find(|e| e.starts_with(&prefix)).expect(&prefix);
        let ttl: i64 = redis.cli(&["PTTL", entry]).parse().unwrap();
        assert!(
            ttl > 0 && ttl <= (CACHE_TTL_SECONDS * 1000) as i64,
            "{entry}: {ttl}"
        );
    }

    // 3. A hung Redis costs a request at most its timeout.
    redis.signal(Signal::STOP);
    for r in &replicas {
        let t = Instant::now();
        assert_eq!(models(&http, &r.base, HUNG.0).status(), StatusCode::OK);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "took {:?} with Redis hung",
            t.elapsed()
        );
    }
    assert!(replicas
        .iter()
        .all(|r| r.metric(&http, "ragd_redis_up", "") == 0.0));
    replicas
        .iter()
        .for_each(|r| r.assert_logged("redis unreachable", 1));
    redis.signal(Signal::CONT);
    wait_redis_up(&http, &replicas, 1.0);
    replicas
        .iter()
        .for_each(|r| r.assert_logged("redis reachable again", 1));

    // 4. Redis killed: limits per process, the cache local, nothing fails.
    let (port, redis_dir) = redis.kill();
    let t0 = Instant::now();
    let on_a = round_robin(&http, &replicas[..1], OUTAGE.0, RPM + 2);
    assert!(
        on_a[0] >= RPM && on_a[0] <= budget(t0.elapsed()),
        "replica 0 alone: {on_a:?}"
    );
    assert_eq!(
        round_robin(&http, &replicas[1..2], OUTAGE.0, 1),
        [1],
        "replica 1 has its own budget"
    );
    let fruit = "Name one fruit.";
    chat(&http, c, ACME.0, fruit, "miss");
    // The local cache answers; nothing is shared meanwhile.
    chat(&http, c, ACME.0, fruit, "hit");
    chat(&http, a, ACME.0, fruit, "miss");
    for r in &replicas {
        assert_eq!(r.metric(&http, "ragd_redis_up", ""), 0.0);
        r.assert_logged("redis unreachable", 2);
    }
    let errors: f64 = ["rate_limit", "cache_get", "cache_put", "ping"]
        .iter()
        .map(|op| replicas[0].metric(&http, "ragd_redis_errors_total", &format!("op=\"{op}\"")))
        .sum();
    assert!(errors >= 1.0, "{errors}");
    for r in &replicas {
        let text = http
            .get(format!("{}/metrics", r.base))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let server_errors = (text.lines())
            .filter(|l| l.starts_with("ragd_http_requests_total") && l.contains("status=\"5"))
            .count();
        assert_eq!(server_errors, 0, "no 5xx at any time");
    }

    // 5. Redis back on its port: shared again.
    let redis = RedisServer::start(&redis_dir, port);
    wait_redis_up(&http, &replicas, 1.0);
    replicas
        .iter()
        .for_each(|r| r.assert_logged("redis reachable again", 2));
    let t0 = Instant::now();
    let accepted = round_robin(&http, &replicas, AFTER.0, RPM);
    let total: usize = accepted.iter().sum();
    assert!(total >= RPM && total <= budget(t0.elapsed()), "{accepted:?}");
    // What replica 0 generates now is shared again (its answer from the
    // outage stays in its local cache only).
    let animal = "Name one animal.";
    chat(&http, a, ACME.0, animal, "miss");
    chat(&http, b, ACME.0, animal, "hit");
    drop(redis);
}
