//! ragd's lexical (BM25) index against tantivy 0.27 on SQuAD v1.1 dev, in
//! one process, one after the other: indexing time, memory, one-thread
//! query time and recall@1/5/10 of each question's own paragraph.
//!
//! ```text
//! cargo run --release --manifest-path benches/lexical_vs_tantivy/Cargo.toml -- [--squad FILE] [--runs N]
//! ```
//!
//! Corpora: `paragraphs` (the 2,067 paragraphs, one text each; every one
//! of the 10,570 questions is a query, its paragraph the right answer) and
//! `windows` (the paragraphs plus their 32-word windows at a stride of 8
//! words, about 60k texts: speed and memory at a larger size, no recall).
//! Top 10 per query.
//!
//! tantivy gets the analyzer closest to ragd's: its simple tokenizer,
//! lower case, NLTK's English stopwords (the list ragd uses), its English
//! stemmer; BM25 with the same k1 1.2 and b 0.75. It indexes each corpus
//! twice: in RAM (compared with ragd, which holds its index in memory), and
//! on disk with one fsynced commit (what its durability costs). ragd's
//! index is rebuilt from the chunk store when a collection loads; its
//! durability is the write-ahead log's, already paid by every upsert.
//!
//! A table goes to stderr, one JSON object to stdout.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ragd_index::bench::BenchLexical;
use serde_json::{json, Value};
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{doc, Index, IndexWriter};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const TOP_K: usize = 10;

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

fn dir_mib(path: &Path) -> f64 {
    let bytes: u64 = std::fs::read_dir(path)
        .map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0);
    bytes as f64 / (1 << 20) as f64
}

struct Corpus {
    name: &'static str,
    texts: Vec<String>,
    /// Whether recall is measured (the questions' golds are its first texts).
    recall: bool,
}

/// `(question, index of its paragraph)`, and the corpora.
fn squad(path: &Path) -> Res<(Vec<(String, u64)>, Vec<Corpus>)> {
    let data: Value =
        serde_json::from_slice(&std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?)?;
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
    let corpora = vec![
        Corpus {
            name: "paragraphs",
            texts: paragraphs,
            recall: true,
        },
        Corpus {
            name: "windows",
            texts: windows,
            recall: false,
        },
    ];
    Ok((questions, corpora))
}

/// A tantivy index of `texts` (ids = positions) in RAM or in `dir`,
/// committed; and the milliseconds it took.
fn tantivy_index(texts: &[String], dir: Option<&Path>) -> Res<(Index, f64)> {
    let mut sb = Schema::builder();
    let indexing = TextFieldIndexing::default()
        .set_tokenizer("ragd_like")
        .set_index_option(IndexRecordOption::WithFreqs);
    let body = sb.add_text_field("body", TextOptions::default().set_indexing_options(indexing));
    let id = sb.add_u64_field("id", FAST);
    let schema = sb.build();
    let index = match dir {
        Some(d) => Index::create_in_dir(d, schema)?,
        None => Index::create_in_ram(schema),
    };
    let stop = stop_words::get("en").iter().map(|s| s.to_string());
    let analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(64))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(stop))
        .filter(Stemmer::new(Language::English))
        .build();
    index.tokenizers().register("ragd_like", analyzer);
    let t0 = Instant::now();
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 200_000_000)?;
    for (i, t) in texts.iter().enumerate() {
        writer.add_document(doc!(id => i as u64, body => t.as_str()))?;
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    Ok((index, t0.elapsed().as_secs_f64() * 1e3))
}

/// Runs every question `runs` times through `search`; the best queries/s,
/// the latencies (µs, sorted) and the ids found by the last run.
fn queries(
    questions: &[(String, u64)],
    runs: usize,
    search: impl Fn(&str) -> Vec<u64>,
) -> (f64, Vec<f64>, Vec<Vec<u64>>) {
    let mut best_qps = 0f64;
    let mut latencies = Vec::new();
    let mut found = Vec::new();
    for _ in 0..runs {
        latencies.clear();
        found.clear();
        let t0 = Instant::now();
        for (q, _) in questions {
            let t = Instant::now();
            found.push(search(q));
            latencies.push(t.elapsed().as_secs_f64() * 1e6);
        }
        best_qps = best_qps.max(questions.len() as f64 / t0.elapsed().as_secs_f64());
    }
    latencies.sort_by(f64::total_cmp);
    (best_qps, latencies, found)
}

struct Row {
    engine: &'static str,
    index_ms: f64,
    rss_mib: f64,
    extra: Value,
    qps: f64,
    latencies: Vec<f64>,
    found: Vec<Vec<u64>>,
}

fn main() -> Res<()> {
    let mut squad_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/squaddev_v1.1.json");
    let mut runs = 3usize;
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        match (pair[0].as_str(), pair.get(1)) {
            ("--squad", Some(v)) => squad_path = v.into(),
            ("--runs", Some(v)) => runs = v.parse::<usize>()?.max(1),
            _ => return Err("usage: lexical_vs_tantivy [--squad FILE] [--runs N]".into()),
        }
    }
    let (questions, corpora) = squad(&squad_path)?;
    let mut report = serde_json::Map::new();
    eprintln!(
        "{:<11} {:<8} {:>7} {:>9} {:>9} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6}",
        "corpus", "engine", "texts", "index_ms", "rss_MiB", "q/s", "p50_us", "p99_us", "r@1", "r@5", "r@10"
    );
    for corpus in &corpora {
        let texts = &corpus.texts;
        let mut rows = Vec::new();
        {
            let rss0 = rss_mib();
            let t0 = Instant::now();
            let mut index = BenchLexical::default();
            for (i, t) in texts.iter().enumerate() {
                index.insert(i as u64, t);
            }
            let index_ms = t0.elapsed().as_secs_f64() * 1e3;
            let rss_mib = rss_mib() - rss0;
            let (qps, latencies, found) = queries(&questions, runs, |q| {
                index.search(q, TOP_K).into_iter().map(|h| h.0).collect()
            });
            let extra = json!({"terms": index.vocabulary(), "heap_mib": index.heap_bytes() as f64 / (1 << 20) as f64});
            rows.push(Row {
                engine: "ragd",
                index_ms,
                rss_mib,
                extra,
                qps,
                latencies,
                found,
            });
        }
        {
            let tmp = tempfile::tempdir()?;
            let (_, disk_ms) = tantivy_index(texts, Some(tmp.path()))?;
            let disk_mib = dir_mib(tmp.path());
            drop(tmp);
            let rss0 = rss_mib();
            let (index, index_ms) = tantivy_index(texts, None)?;
            let reader = index.reader()?;
            let searcher = reader.searcher();
            let rss_mib = rss_mib() - rss0;
            let body = index.schema().get_field("body")?;
            let parser = QueryParser::for_index(&index, vec![body]);
            let ids: Vec<_> = (searcher.segment_readers().iter())
                .map(|s| s.fast_fields().u64("id"))
                .collect::<Result<_, _>>()?;
            let (qps, latencies, found) = queries(&questions, runs, |q| {
                let (query, _) = parser.parse_query_lenient(q);
                let top = searcher
                    .search(&query, &TopDocs::with_limit(TOP_K).order_by_score())
                    .unwrap_or_default();
                (top.iter())
                    .filter_map(|(_, a)| ids[a.segment_ord as usize].first(a.doc_id))
                    .collect()
            });
            let extra = json!({"disk_commit_ms": disk_ms, "disk_mib": disk_mib});
            rows.push(Row {
                engine: "tantivy",
                index_ms,
                rss_mib,
                extra,
                qps,
                latencies,
                found,
            });
        }
        let mut by_engine = serde_json::Map::new();
        for row in rows {
            let recall = |k: usize| {
                let hits = (questions.iter().zip(&row.found))
                    .filter(|((_, gold), hits)| hits.iter().take(k).any(|h| h == gold))
                    .count();
                hits as f64 / questions.len() as f64
            };
            let r = if corpus.recall {
                [1, 5, 10].map(recall)
            } else {
                [f64::NAN; 3]
            };
            let (p50, p99) = (percentile(&row.latencies, 50.0), percentile(&row.latencies, 99.0));
            eprintln!(
                "{:<11} {:<8} {:>7} {:>9.0} {:>9.1} {:>8.0} {:>8.0} {:>8.0} {:>6.3} {:>6.3} {:>6.3}   {}",
                corpus.name,
                row.engine,
                texts.len(),
                row.index_ms,
                row.rss_mib,
                row.qps,
                p50,
                p99,
                r[0],
                r[1],
                r[2],
                row.extra
            );
            let mut v = json!({
                "texts": texts.len(), "index_ms": row.index_ms, "rss_growth_mib": row.rss_mib,
                "queries": questions.len(), "queries_per_second": row.qps,
                "latency_us_p50": p50, "latency_us_p99": p99,
                "recall": corpus.recall.then(|| json!({"at_1": r[0], "at_5": r[1], "at_10": r[2]})),
            });
            if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), row.extra) {
                v.extend(extra);
            }
            by_engine.insert(row.engine.into(), v);
        }
        report.insert(corpus.name.into(), Value::Object(by_engine));
    }
    println!("{}", Value::Object(report));
    Ok(())
}
