//! The Prometheus side of ragd and the monitoring kit in
//! `docker/monitoring/`: a live `/metrics` passes `promtool check metrics`;
//! the kit's config, rules and rule tests pass promtool; every metric the
//! dashboard and the rules name exists on a live ragd; and a real
//! Prometheus scrapes a running ragd and evaluates the kit's rules on it.
//!
//! Needs `promtool` and `prometheus` on PATH (`apt-get install
//! prometheus`): without them these tests fail, they do not skip.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ragd_suite::{repo_root, start_on_own_thread, StopOnDrop};
use serde_json::{json, Value};

/// The generator the test server loads (the default).
const GENERATOR: &str = "smollm2-135m-instruct-q4_1";
/// The upstream the test server is given.
const UPSTREAM: &str = "spare";

fn kit() -> PathBuf {
    repo_root().join("docker/monitoring")
}

/// `name` from PATH, or a failure that says how to install it.
fn tool(name: &str) -> PathBuf {
    ragd_suite::tool_on_path(
        name,
        "install Prometheus with `apt-get install prometheus` (Debian's package ships prometheus \
         and promtool); these tests need it and do not skip",
    )
}

/// One server for the whole binary, with every optional metric on (guard
/// screening, the semantic cache, an upstream to fall back to), after a
/// few requests so the histograms and the HTTP series have samples. The
/// upstream lists its models, so ragd never calls it (nothing listens on
/// port 9): its series are there, at 0, from the start.
fn server() -> SocketAddr {
    static SERVER: OnceLock<(SocketAddr, StopOnDrop)> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let (addr, stop) = start_on_own_thread(|c| {
                c.guard.screen_chat = true;
                c.caches.semantic_threshold = Some(0.95);
                c.upstreams.upstreams = vec![ragd_server::config::UpstreamSpec {
                    name: UPSTREAM.into(),
                    url: "http://127.0.0.1:9".into(),
                    key: None,
                    key_file: None,
                    models: Some(vec!["some-model".into()]),
                }];
            });
            let base = format!("http://{addr}");
            let http = reqwest::blocking::Client::new();
            let post = |path: &str, body: Value| {
                let r = http.post(format!("{base}{path}")).json(&body).send().expect(path);
                assert!(r.status().is_success(), "{path}: {}", r.status());
            };
            post(
                "/v1/embeddings",
                json!({"model": "all-minilm-l6-v2", "input": "How is the KV cache used?"}),
            );
            post(
                "/v1/chat/completions",
                json!({"model": GENERATOR, "max_tokens": 4, "temperature": 0,
                       "messages": [{"role": "user", "content": "Say hello."}]}),
            );
            (addr, stop)
        })
        .0
}

fn live_metrics() -> String {
    let url = format!("http://{}/metrics", server());
    let r = reqwest::blocking::get(&url).expect("GET /metrics");
    assert!(r.status().is_success(), "GET /metrics: {}", r.status());
    r.text().expect("metrics text")
}

/// Runs `cmd` (with `stdin` fed in) and returns its output.
fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `promtool ARGS` in the kit's folder and asserts it succeeds.
fn promtool_ok(args: &[&str]) {
    let out = run(Command::new(tool("promtool")).args(args).current_dir(kit()), b"");
    assert!(out.status.success(), "promtool {args:?} failed:\n{}", text(&out));
}

#[test]
fn live_metrics_pass_promtool_check_metrics() {
    let metrics = live_metrics();
    assert!(
        metrics.contains("ragd_http_request_duration_seconds_bucket{"),
        "{metrics}"
    );
    // The dashboard selects this bucket by its `le` (share of searches
    // whose best hit scores under 0.3).
    assert!(
        metrics.contains("ragd_retrieval_top_score_bucket{le=\"0.3\"}"),
        "{metrics}"
    );
    let out = run(
        Command::new(tool("promtool")).args(["check", "metrics"]),
        metrics.as_bytes(),
    );
    assert!(
        out.status.success() && text(&out).trim().is_empty(),
        "promtool check metrics on a live /metrics (exit {:?}):\n{}",
        out.status.code(),
        text(&out)
    );
}

#[test]
fn the_kit_passes_promtool_config_rules_and_rule_tests() {
    promtool_ok(&["check", "config", "prometheus.yml"]);
    promtool_ok(&["check", "rules", "rules/ragd-rules.yml"]);
    promtool_ok(&["test", "rules", "rules/ragd-rules.test.yml"]);
}

/// The rules file's expressions and the names of its recording rules.
/// Reads the shapes the file uses: `expr: ONE LINE`, or `expr: |` followed
/// by lines indented deeper than the key (checked against Prometheus's own
/// count of rules in the scrape test).
fn rules_exprs(yaml: &str) -> (Vec<String>, BTreeSet<String>) {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    let mut records = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        let item = line.trim_start().trim_start_matches("- ");
        if let Some(name) = item.strip_prefix("record:") {
            records.insert(name.trim().to_string());
        }
        let Some(value) = item.strip_prefix("expr:").map(str::trim) else {
            continue;
        };
        if value.starts_with('|') || value.starts_with('>') {
            let block = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
                .copied()
                .collect::<Vec<_>>()
                .join("\n");
            exprs.push(block);
        } else {
            exprs.push(value.trim_matches(|c| c == '\'' || c == '"').to_string());
        }
    }
    (exprs, records)
}

/// The dashboard's PromQL: every panel target's `expr` and every
/// variable's `definition` (`label_values(...)`).
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// The series names a PromQL expression reads: ragd's metrics (`ragd_*`)
/// and recording rules (`level:metric:operations`). Quoted strings (label
/// values, regexes) are dropped first; functions, labels and keywords are
/// never named `ragd_*` and hold no colon. (`up`, Prometheus's own series,
/// is not ragd's and not checked.)
fn series_names(expr: &str) -> Vec<String> {
    let mut unquoted = String::new();
    let mut quote = None;
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(_) if c == '\\' => {
                chars.next();
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if matches!(c, '"' | '\'' | '`') => quote = Some(c),
            None => unquoted.push(c),
        }
    }
    unquoted
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("ragd_") || (t.contains(':') && t.starts_with(|c: char| c.is_alphabetic())))
        .map(str::to_string)
        .collect()
}

/// `# TYPE` of every metric family on a `/metrics` page.
fn metric_types(metrics: &str) -> BTreeMap<String, String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.trim().to_string()))
        .collect()
}

/// Whether `name` is a series of the page: a counter or gauge by its name,
/// a histogram by its `_bucket`, `_sum` or `_count`.
fn is_series(types: &BTreeMap<String, String>, name: &str) -> bool {
    let histogram_part = ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .any(|base| types.get(base).is_some_and(|k| k == "histogram"));
    histogram_part
        || types
            .get(name)
            .is_some_and(|k| k != "histogram" && k != "summary")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_metric_the_dashboard_and_rules_use_exists_on_a_live_ragd() {
    let (rule_exprs, records) = rules_exprs(&read(&kit().join("rules/ragd-rules.yml")));
    assert!(rule_exprs.len() >= 20, "read too few rules: {rule_exprs:?}");
    let dashboard: Value =
        serde_json::from_str(&read(&kit().join("grafana/ragd-dashboard.json"))).expect("dashboard JSON");
    let panel_exprs = dashboard_exprs(&dashboard);
    assert!(
        panel_exprs.len() >= 30,
        "read too few dashboard queries: {panel_exprs:?}"
    );
    let types = metric_types(&live_metrics());
    let mut checked = BTreeSet::new();
    let mut missing = Vec::new();
    for (source, expr) in rule_exprs
        .iter()
        .map(|e| ("rules", e))
        .chain(panel_exprs.iter().map(|e| ("dashboard", e)))
    {
        for name in series_names(expr) {
            let known = if name.contains(':') {
                records.contains(&name)
            } else {
                is_series(&types, &name)
            };
            if !known {
                missing.push(format!("{source}: {name} in `{expr}`"));
            }
            checked.insert(name);
        }
    }
    assert!(
        missing.is_empty(),
        "names that neither ragd's /metrics ({} families) nor the recording rules have:\n{}",
        types.len(),
        missing.join("\n")
    );
    assert!(checked.len() >= 30, "checked too few names: {checked:?}");
}

/// A Prometheus process, killed when dropped.
struct Prometheus {
    child: Child,
    log: PathBuf,
    base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port, scraping `target` every
    /// second as job `ragd`, with the kit's rules evaluated every second.
    fn start(target: SocketAddr) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ragd-prometheus")
            .tempdir()
            .expect("temp dir");
        let rules = read(&kit().join("rules/ragd-rules.yml")).replace("interval: 30s", "interval: 1s");
        std::fs::write(dir.path().join("ragd-rules.yml"), rules).expect("write rules");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - ragd-rules.yml\n\
             scrape_configs:\n  - job_name: ragd\n    static_configs:\n      - targets: [\"{target}\"]\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("write config");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(tool("prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start prometheus");
        Self {
            child,
            log,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// `GET /api/v1/{path}`'s `data`, or `None` while it does not answer.
    fn api(&self, path: &str) -> Option<Value> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .ok()?;
        let body: Value = client
            .get(format!("{}/api/v1/{path}", self.base))
            .send()
            .ok()?
            .json()
            .ok()?;
        (body["status"] == "success").then(|| body["data"].clone())
    }

    /// Polls `check` every 250 ms for up to a minute; fails with the
    /// Prometheus log when it never holds.
    fn wait_for<T>(&mut self, what: &str, mut check: impl FnMut(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", read(&self.log));
            }
            assert!(
                Instant::now() < deadline,
                "waited 60 s for {what}; prometheus log:\n{}",
                read(&self.log)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The vector result of an instant query, when it has samples.
fn query(p: &Prometheus, promql: &str) -> Option<Vec<Value>> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let data = p.api(&format!("query?query={encoded}"))?;
    let result = data["result"].as_array()?.clone();
    (!result.is_empty()).then_some(result)
}

#[test]
fn a_real_prometheus_scrapes_ragd_and_evaluates_the_kit_rules() {
    let target = server();
    let mut prometheus = Prometheus::start(target);
    let series = prometheus.wait_for("ragd_kv_blocks_capacity in Prometheus", |p| {
        query(p, "ragd_kv_blocks_capacity")
    });
    let labels = &series[0]["metric"];
    assert_eq!(labels["job"], "ragd", "{series:?}");
    assert_eq!(labels["model"], GENERATOR, "{series:?}");
    assert_eq!(labels["instance"], target.to_string(), "{series:?}");
    let blocks: f64 = series[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert!(blocks > 0.0, "{series:?}");
    let up = prometheus.wait_for("up{job=\"ragd\"}", |p| query(p, "up{job=\"ragd\"} == 1"));
    assert_eq!(up.len(), 1, "{up:?}");
    let ready = prometheus.wait_for("ragd_ready", |p| query(p, "ragd_ready == 1"));
    assert_eq!(ready.len(), 1, "{ready:?}");
    // The upstream's series exist before any fallback: closed, none yet.
    let breakers = prometheus.wait_for("ragd_upstream_breaker_state", |p| {
        query(p, "ragd_upstream_breaker_state == 0")
    });
    assert_eq!(breakers[0]["metric"]["upstream"], UPSTREAM, "{breakers:?}");
    let fallbacks = prometheus.wait_for("ragd_fallbacks_total", |p| {
        query(p, "ragd_fallbacks_total{from=\"local\"} == 0")
    });
    assert_eq!(fallbacks[0]["metric"]["to"], UPSTREAM, "{fallbacks:?}");

    // Every rule of the kit loads and evaluates without error on real ragd
    // series (a label mismatch in a division, say, shows as health "err").
    let (exprs, _) = rules_exprs(&read(&kit().join("rules/ragd-rules.yml")));
    let rules = prometheus.wait_for("every rule evaluated", |p| {
        let data = p.api("rules")?;
        let rules: Vec<Value> = data["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = |r: &Value| {
            r["lastEvaluation"]
                .as_str()
                .is_some_and(|t| !t.starts_with("0001"))
        };
        (rules.len() == exprs.len() && rules.iter().all(evaluated)).then_some(rules)
    });
    let broken: Vec<_> = rules
        .iter()
        .filter(|r| r["health"] != "ok")
        .map(|r| format!("{}: {} ({})", r["name"], r["health"], r["lastError"]))
        .collect();
    assert!(
        broken.is_empty(),
        "rules that failed to evaluate:\n{}",
        broken.join("\n")
    );
    // A recording rule over ragd's gauges yields a series per model.
    let kv = prometheus.wait_for("the KV-usage recording rule", |p| {
        query(p, "instance_model:ragd_kv_cache_usage:ratio")
    });
    assert_eq!(kv[0]["metric"]["model"], GENERATOR, "{kv:?}");
    let queues = prometheus.wait_for("the queue-usage recording rule", |p| {
        query(p, "instance_model:ragd_queue_usage:ratio").filter(|r| r.len() == 3)
    });
    let models: BTreeSet<_> = queues
        .iter()
        .filter_map(|s| s["metric"]["model"].as_str())
        .collect();
    assert!(models.contains(GENERATOR), "{queues:?}");
    // Nothing is pending or firing against a healthy ragd.
    assert_eq!(query(&prometheus, "ALERTS"), None, "no alert pending or firing");
}
