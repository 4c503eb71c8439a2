//! The deployment files against ragd itself. `scripts/validate-deploy`
//! validates the Kubernetes manifests (strict Kubernetes JSON schemas), the
//! compose file (compose-spec schema) and the Dockerfiles, and reports what
//! they ask of ragd; this test holds that to a live ragd and its flags:
//!
//! - the probes' paths answer 200 on a ready server, readiness on `/ready`
//!   (503 while draining) and liveness on `/health`;
//! - the metrics the autoscaler and the Prometheus adapter read exist on
//!   `/metrics`;
//! - every `RAGD_*` variable the manifests and compose set is one that
//!   `ragd serve` reads (a typo would be ignored silently);
//! - the pod's grace period covers the preStop sleep and ragd's drain.

use std::collections::BTreeSet;
use std::process::Command;

use clap::CommandFactory;
use ragd_suite::{get_text, metric_value, repo_root, start_on_own_thread};
use serde_json::Value;

/// Variables of flags that other work adds (`--store postgres://...` comes
/// with the Postgres store); the manifests set them ahead of it.
const PENDING: &[&str] = &["RAGD_STORE"];

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_and_compose_validate_and_match_a_live_ragd() {
    let summary = validate();
    let known = ragd_variables();
    let mut variables: Vec<String> = strings(&summary["compose"]["env"]);
    let overlays = summary["overlays"].as_object().expect("overlays");
    assert_eq!(overlays.len(), 2, "cpu and nvidia-gpu");
    for facts in overlays.values() {
        variables.extend(strings(&facts["env"]));
    }
    let unknown: BTreeSet<&String> = variables
        .iter()
        .filter(|v| !known.contains(*v) && !PENDING.contains(&v.as_str()))
        .collect();
    assert!(unknown.is_empty(), "variables ragd does not read: {unknown:?}");

    let (addr, _server) = start_on_own_thread(|_| {});
    let base = format!("http://{addr}");
    let metrics = get_text(&base, "/metrics").await;
    for (name, facts) in overlays {
        assert_eq!(
            facts["port"], facts["port_flag"],
            "{name}: container port is RAGD_PORT"
        );
        assert_eq!(
            (facts["readiness"].as_str(), facts["liveness"].as_str()),
            (Some("/ready"), Some("/health")),
            "{name}"
        );
        for path in strings(&facts["probes"]) {
            let status = reqwest::get(format!("{base}{path}")).await.unwrap().status();
            assert_eq!(status, reqwest::StatusCode::OK, "{name}: probe {path}");
        }
        let grace = facts["termination_grace_seconds"].as_u64().unwrap();
        let needed =
            facts["pre_stop_seconds"].as_u64().unwrap() + facts["shutdown_grace_seconds"].as_u64().unwrap();
        assert!(
            grace > needed,
            "{name}: grace {grace}s, preStop + drain {needed}s"
        );
        for metric in strings(&facts["hpa_metrics"]) {
            assert!(
                metric_value(&metrics, &metric, "").is_some(),
                "{name}: the HPA's {metric} is not on /metrics"
            );
        }
    }
    assert_eq!(overlays["overlays/nvidia-gpu"]["gpus"], "1");
    assert!(overlays["overlays/cpu"]["gpus"].is_null());
    for metric in strings(&summary["adapter_metrics"]) {
        assert!(
            metric_value(&metrics, &metric, "").is_some(),
            "the adapter's {metric} is not on /metrics"
        );
    }
    assert_eq!(
        strings(&summary["compose"]["replicas"]).len(),
        3,
        "three replicas behind nginx"
    );
}
