//! `ragd bench node` against a real server (port 0, the default models:
//! SmolLM2, MiniLM, NanoGuard), parsed from its command line: a tiny sweep
//! whose every figure is real and positive, compared with the same server
//! through `--compare` so the ratios are there too.

use clap::Parser;
use ragd_cli::cli::{BenchCommand, Cli, Command};
use ragd_suite::start_on_own_thread;
use serde_json::Value;

fn args(url: &str) -> ragd_bench::NodeBenchArgs {
    let argv = [
        "ragd",
        "bench",
        "node",
        "--url",
        url,
        "--concurrency",
        "1,2",
        "--requests-per-client",
        "1",
        "--prompt-tokens",
        "16",
        "--max-tokens",
        "8",
        "--embed-texts",
        "16",
        "--embed-batch",
        "8",
        "--guard-texts",
        "8",
        "--guard-batch",
        "4",
        "--compare",
        url,
        "--compare-label",
        "again",
    ];
    match Cli::parse_from(argv).command {
        Command::Bench(BenchCommand::Node(args)) => *args,
        other => panic!("not `bench node`: {other:?}"),
    }
}

fn positive(v: &Value, what: &str) -> f64 {
    let x = v.as_f64().unwrap_or_else(|| panic!("{what} missing: {v}"));
    assert!(x > 0.0, "{what} = {x}");
    x
}

#[test]
fn bench_node_measures_a_real_server_and_compares_it_with_itself() {
    let (addr, _server) = start_on_own_thread(|_| {});
    let report = ragd_bench::node::measure(args(&format!("http://{addr}"))).expect("bench node runs");
    let markdown = ragd_bench::node::render(&report);
    eprintln!("{markdown}");
    let v = report.to_json();

    positive(&v["node"]["logical_cpus"], "logical CPUs");
    positive(&v["node"]["memory_total_bytes"], "memory");
    let embeddings = v["embeddings"].as_array().expect("embeddings measured");
    assert_eq!(embeddings.len(), 2);
    for e in embeddings {
        assert_eq!(
            (e["texts"].as_u64(), e["errors"].as_u64()),
            (Some(16), Some(0)),
            "{e}"
        );
        positive(&e["texts_per_second"], "embeddings/s");
    }
    assert_eq!(v["guard"]["texts"].as_u64(), Some(8), "{}", v["guard"]);
    positive(&v["guard"]["texts_per_second"], "guard windows/s");

    for sweep in [&v["generation"], &v["compare"]] {
        let levels = sweep["levels"].as_array().expect("levels");
        assert_eq!(levels.len(), 2, "{sweep}");
        for l in levels {
            assert_eq!(
                (l["errors"].as_u64(), l["retries"].as_u64()),
                (Some(0), Some(0)),
                "{l}"
            );
            positive(&l["output_tokens_per_s"], "tok/s");
            positive(&l["ttft_p50_ms"], "TTFT p50");
            positive(&l["itl_p99_ms"], "ITL p99");
            positive(&l["kv_cache"]["capacity_blocks"], "KV blocks");
        }
        positive(&sweep["queue_capacity"], "queue capacity");
    }
    let ratios = v["ratios"].as_array().expect("ratios");
    assert_eq!(ratios.len(), 2);
    for r in ratios {
        positive(&r["tokens_per_second"], "tok/s ratio");
        positive(&r["ttft_p50"], "TTFT ratio");
    }

    assert!(markdown.contains("| ragd | 2 | 2 | 0 |"), "{markdown}");
    assert!(markdown.contains("| again | 1 | 1 | 0 |"), "{markdown}");
    assert!(markdown.contains("## ragd / again"), "{markdown}");
    assert!(
        markdown.contains("embeddings/s") && markdown.contains("windows/s"),
        "{markdown}"
    );
}
