//! Liveness, readiness, model listing and metrics.

use ragd_suite::{get_json, get_text, shared_server, start_on_own_thread};

#[tokio::test]
async fn ready_lists_models_and_metrics_have_units() {
    let base = format!("http://{}", shared_server());
    let c = reqwest::Client::new();
    assert_eq!(
        c.get(format!("{base}/health")).send().await.unwrap().status(),
        200
    );
    let ready = c.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let models = get_json(&base, "/v1/models").await;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["all-minilm-l6-v2", "nanoguard", "smollm2-135m-instruct-q4_1"]
    );
    let card = get_json(&base, "/v1/models/nanoguard").await;
    assert_eq!(card["kind"], "guard");
    assert_eq!(card["max_input_tokens"], 512);
    let card = get_json(&base, "/v1/models/smollm2-135m-instruct-q4_1").await;
    assert_eq!(card["kind"], "generator");
    assert_eq!(card["max_input_tokens"], 4096);
    let metrics = get_text(&base, "/metrics").await;
    for name in [
        "ragd_http_requests_total",
        "ragd_http_request_duration_seconds_bucket",
        "ragd_batch_size_bucket",
        "ragd_queue_depth",
        "ragd_forward_seconds_bucket",
        "ragd_kv_blocks_capacity",
        "ragd_time_to_first_token_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_fails_the_start_loudly() {
    let missing =
        |c: &mut ragd_server::config::ServeConfig| c.models.embedder = "/nonexistent/model/folder".into();
    let result = std::panic::catch_unwind(|| start_on_own_thread(missing));
    assert!(result.is_err(), "a server with a missing model must not start");
}
