//! The deployment files against ragd itself. `scripts/validate-deploy`
//! validates the Kubernetes manifests (strict Kubernetes JSON schemas), the
//! compose file (compose-spec schema), the nginx and Prometheus configs and
//! the Dockerfiles, and reports what they ask of ragd; this test holds that
//! to ragd:
//!
//! - every `RAGD_*` variable the manifests and compose set is one that
//!   `ragd serve` reads (a typo would be ignored silently);
//! - the CPU pod's configuration boots ragd: its environment (the ConfigMap,
//!   the Secrets, the CPU limit) with its volumes laid out in a folder (the
//!   models volume is the test models folder, the Secrets' files written
//!   out), as a child process; the probes' paths answer 200 once ready, the
//!   metrics the autoscaler and the Prometheus adapter read are on
//!   `/metrics`, and SIGTERM drains it to a clean exit;
//! - the pod's grace period covers the preStop sleep and ragd's drain, and
//!   the GPU overlay asks for a GPU.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::CommandFactory;
use ragd_suite::scale_out::Replica;
use ragd_suite::{metric_value, repo_root};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::Value;

/// A replica (does nothing in a normal test run): `ragd serve` with the
/// pod's environment.
#[test]
#[ignore = "started by the manifests test in a child process"]
fn replica() {
    ragd_suite::scale_out::serve_replica_from_env();
}

/// Runs the validator; returns its summary.
fn validate() -> Value {
    let out = Command::new(repo_root().join("scripts/validate-deploy"))
        .output()
        .expect("run scripts/validate-deploy");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scripts/validate-deploy failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{stdout}");
    let summary = stdout
        .lines()
        .find_map(|l| l.strip_prefix("DEPLOY-SUMMARY "))
        .expect("a summary line");
    serde_json::from_str(summary).expect("summary JSON")
}

/// Every variable `ragd` reads: its global flags' and `ragd serve`'s.
fn ragd_variables() -> BTreeSet<String> {
    let cli = ragd_cli::cli::Cli::command();
    let serve = cli.find_subcommand("serve").expect("ragd serve").clone();
    cli.get_arguments()
        .chain(serve.get_arguments())
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// The pod's environment with its mount paths moved into `root` (Secrets'
/// files written there; the models volume is the test models folder), on
/// 127.0.0.1 and a free port instead of 0.0.0.0:8080, and its store the
/// Postgres at `store_url`.
fn pod_env_here(facts: &Value, root: &std::path::Path, store_url: &str) -> Vec<(String, String)> {
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    for (i, m) in facts["mounts"].as_array().expect("mounts").iter().enumerate() {
        let path = m["path"].as_str().expect("path").to_string();
        let local = match m["kind"].as_str().expect("kind") {
            "pvc" => {
                assert_eq!(path, "/models", "the only volume claim is the models'");
                ragd_suite::models_dir()
            }
            "emptyDir" => root.join(format!("empty{i}")),
            "secret" => {
                let dir = root.join(format!("secret{i}"));
                std::fs::create_dir_all(&dir).unwrap();
                for (name, text) in m["files"].as_object().expect("files") {
                    std::fs::write(dir.join(name), text.as_str().expect("text")).unwrap();
                }
                dir
            }
            other => panic!("volume kind {other}"),
        };
        mounts.push((path, local));
    }
    // The longest mount path that prefixes a value wins.
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    let env = facts["pod_env"].as_object().expect("pod_env");
    env.iter()
        .map(|(name, value)| {
            let value = value.as_str().expect("a string value");
            let here = match name.as_str() {
                "RAGD_HOST" => "127.0.0.1".to_string(),
                "RAGD_PORT" => "0".to_string(),
                // The manifests' Postgres service, here a real one on loopback.
                "RAGD_STORE" => store_url.to_string(),
                _ => mounts
                    .iter()
                    .find_map(|(path, local)| {
                        let rest = value.strip_prefix(path.as_str())?;
                        (rest.is_empty() || rest.starts_with('/'))
                            .then(|| format!("{}{rest}", local.display()))
                    })
                    .unwrap_or_else(|| value.to_string()),
            };
            (name.clone(), here)
        })
        .collect()
}

#[test]
fn manifests_and_compose_validate_and_the_pod_configuration_serves() {
    let summary = validate();
    let known = ragd_variables();
    let overlays = summary["overlays"].as_object().expect("overlays");
    assert_eq!(overlays.len(), 2, "cpu and nvidia-gpu");
    let mut variables: Vec<String> = strings(&summary["compose"]["env"]);
    for (name, facts) in overlays {
        variables.extend(strings(&facts["env"]));
        assert_eq!(
            facts["port"], facts["port_flag"],
            "{name}: container port is RAGD_PORT"
        );
        assert_eq!(
            (facts["readiness"].as_str(), facts["liveness"].as_str()),
            (Some("/ready"), Some("/health")),
            "{name}"
        );
        let grace = facts["termination_grace_seconds"].as_u64().unwrap();
        let needed =
            facts["pre_stop_seconds"].as_u64().unwrap() + facts["shutdown_grace_seconds"].as_u64().unwrap();
        assert!(
            grace > needed,
            "{name}: grace {grace}s, preStop + drain {needed}s"
        );
    }
    let unknown: BTreeSet<&String> = variables.iter().filter(|v| !known.contains(*v)).collect();
    assert!(unknown.is_empty(), "variables ragd does not read: {unknown:?}");
    assert_eq!(overlays["overlays/nvidia-gpu"]["gpus"], "1");
    assert_eq!(overlays["overlays/nvidia-gpu"]["pod_env"]["RAGD_DEVICE"], "cuda");
    assert!(overlays["overlays/cpu"]["gpus"].is_null());
    assert_eq!(strings(&summary["compose"]["replicas"]).len(), 3);

    // The CPU pod's configuration, run here.
    let cpu = &overlays["overlays/cpu"];
    let root = tempfile::tempdir().unwrap();
    let pg = ragd_suite::postgres::Postgres::start();
    let env = pod_env_here(cpu, root.path(), &pg.url());
    let pod = Replica::spawn_with_env(&[], &env);
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for path in strings(&cpu["probes"]) {
        let status = http.get(format!("{}{path}", pod.base)).send().unwrap().status();
        assert_eq!(status, StatusCode::OK, "probe {path}");
    }
    let metrics = http
        .get(format!("{}/metrics", pod.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let scaled_on = strings(&cpu["hpa_metrics"])
        .into_iter()
        .chain(strings(&summary["adapter_metrics"]));
    for metric in scaled_on {
        assert!(
            metric_value(&metrics, &metric, "").is_some(),
            "{metric}, which the autoscaler reads, is not on /metrics"
        );
    }
    // The admin key came from the Secret's file: /admin needs it.
    let admin_key = env
        .iter()
        .find(|(k, _)| k == "RAGD_ADMIN_KEY_FILE")
        .map(|(_, path)| std::fs::read_to_string(path).unwrap())
        .expect("RAGD_ADMIN_KEY_FILE");
    let keys = |key: &str| {
        http.get(format!("{}/admin/keys", pod.base))
            .bearer_auth(key)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(keys(admin_key.trim()), StatusCode::OK);
    assert_eq!(keys("not-the-admin-key"), StatusCode::UNAUTHORIZED);
    let t0 = Instant::now();
    pod.terminate();
    let drain = cpu["shutdown_grace_seconds"].as_u64().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(drain),
        "an idle pod drains at once: {:?}",
        t0.elapsed()
    );
}
