//! ragd's lexical (BM25) index on SQuAD v1.1 dev: indexing time, memory,
//! single-thread query time and recall@1/5/10 of the question's own
//! paragraph. `benches/lexical_peer/` runs tantivy on the same texts.
//!
//! ```text
//! cargo run --release -p ragd-index --example lexical_bench -- [--squad FILE] [--runs N]
//! ```
//!
//! Two corpora: `paragraphs` (every paragraph, one chunk each; every
//! question is a query, its paragraph the right answer) and `windows` (the
//! paragraphs plus 32-word windows of them at a stride of 8 words, about
//! 60k texts, for speed and memory at a larger size; queries are the same
//! questions, no recall). A table goes to stderr and one JSON object to
//! stdout.

use std::path::PathBuf;
use std::time::Instant;

use ragd_index::bench::BenchLexical;
use serde_json::{json, Value};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() {
    if let Err(e) = run() {
        eprintln!("lexical_bench: {e}");
        std::process::exit(1);
    }
}

/// Resident set size now, in MiB (Linux).
fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1 << 20) as f64
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p / 100.0).round() as usize]
}

fn run() -> Res<()> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut squad = repo.join("../shared/data/squaddev_v1.1.json");
    let mut runs = 3usize;
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        match (pair[0].as_str(), pair.get(1)) {
            ("--squad", Some(v)) => squad = v.into(),
            ("--runs", Some(v)) => runs = v.parse::<usize>()?.max(1),
            _ => return Err("usage: lexical_bench [--squad FILE] [--runs N]".into()),
        }
    }
    let data: Value =
        serde_json::from_slice(&std::fs::read(&squad).map_err(|e| format!("{}: {e}", squad.display()))?)?;
    let mut paragraphs = Vec::new();
    let mut questions = Vec::new();
    for article in data["data"].as_array().ok_or("no data array")? {
        for p in article["paragraphs"].as_array().ok_or("no paragraphs")? {
            for qa in p["qas"].as_array().ok_or("no qas")? {
                let q = qa["question"].as_str().ok_or("no question")?;
                questions.push((q.to_string(), paragraphs.len() as u64));
            }
            paragraphs.push(p["context"].as_str().ok_or("no context")?.to_string());
        }
    }
    let mut windows = paragraphs.clone();
    for p in &paragraphs {
        let words: Vec<&str> = p.split_whitespace().collect();
        let mut start = 0;
        while start + 32 <= words.len() {
            windows.push(words[start..start + 32].join(" "));
            start += 8;
        }
    }
    let mut report = serde_json::Map::new();
    eprintln!(
        "{:<11} {:>7} {:>9} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "corpus",
        "texts",
        "terms",
        "index_ms",
        "heap_MiB",
        "rss_MiB",
        "q/s",
        "p50_us",
        "p99_us",
        "r@1",
        "r@5",
        "r@10"
    );
    for (name, texts) in [("paragraphs", &paragraphs), ("windows", &windows)] {
        let rss0 = rss_mib();
        let t0 = Instant::now();
        let mut index = BenchLexical::default();
        for (i, t) in texts.iter().enumerate() {
            index.insert(i as u64, t);
        }
        let index_ms = t0.elapsed().as_secs_f64() * 1e3;
        let rss = rss_mib() - rss0;
        let mut best_qps = 0f64;
        let mut latencies = Vec::new();
        let mut found = Vec::new();
        for _ in 0..runs {
            latencies.clear();
            found.clear();
            let t0 = Instant::now();
            for (q, _) in &questions {
                let t = Instant::now();
                found.push(index.search(q, 10));
                latencies.push(t.elapsed().as_secs_f64() * 1e6);
            }
            best_qps = best_qps.max(questions.len() as f64 / t0.elapsed().as_secs_f64());
        }
        latencies.sort_by(f64::total_cmp);
        let recall = |k: usize| {
            let hits = (questions.iter().zip(&found))
                .filter(|((_, gold), hits)| hits.iter().take(k).any(|h| h.0 == *gold))
                .count();
            hits as f64 / questions.len() as f64
        };
        let (r1, r5, r10) = if name == "paragraphs" {
            (recall(1), recall(5), recall(10))
        } else {
            (f64::NAN, f64::NAN, f64::NAN)
        };
        let heap = index.heap_bytes() as f64 / (1 << 20) as f64;
        let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
        eprintln!(
            "{name:<11} {:>7} {:>9} {index_ms:>10.0} {heap:>9.1} {rss:>9.1} {best_qps:>9.0} {p50:>8.0} {p99:>8.0} {r1:>8.3} {r5:>8.3} {r10:>8.3}",
            texts.len(),
            index.vocabulary(),
        );
        let recall = (name == "paragraphs").then(|| json!({"at_1": r1, "at_5": r5, "at_10": r10}));
        report.insert(
            name.into(),
            json!({
                "texts": texts.len(), "terms": index.vocabulary(), "index_ms": index_ms,
                "heap_mib": heap, "rss_growth_mib": rss, "queries": questions.len(),
                "queries_per_second": best_qps, "latency_us_p50": p50, "latency_us_p99": p99,
                "recall": recall,
            }),
        );
        drop(index);
    }
    println!("{}", Value::Object(report));
    Ok(())
}
