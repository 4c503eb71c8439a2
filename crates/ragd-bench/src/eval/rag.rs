//! `ragd eval rag`: retrieval and answer accuracy of a running ragd on a
//! SQuAD-format file, through the HTTP API (so it measures exactly what
//! clients get).
//!
//! 1. Loads every paragraph into a collection (`POST .../documents`),
//!    unless `--reuse` finds it already loaded.
//! 2. Retrieval: for evenly spaced questions, `POST .../search` with
//!    `top_k` 10 in each search mode (`dense`, `lexical`, `hybrid`):
//!    recall@k = the question's own paragraph is among the first k
//!    distinct documents retrieved (k = 1, 5, 10). With `--reranker`, a
//!    `hybrid+rerank` row too: `--rerank-candidates` hybrid hits reordered
//!    by the server's `POST /v1/rerank`.
//! 3. Answers: for a smaller evenly spaced set, a chat completion with the
//!    retrieval extension (`"rag": {"collection", "top_k", "mode"}`), greedy:
//!    SQuAD exact match and F1 against the gold answers, the "don't know"
//!    rate and how often the gold paragraph was among the sources.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use futures::stream::{self, StreamExt};
use ragd_client::{first_model, progress, runtime, ApiClient as Client, ServerFlags};
use reqwest::Method;
use serde_json::{json, Value};

use super::squad::{self, Paragraph, Question};
use crate::stats::percentile;

#[derive(Debug, Clone, Args)]
pub struct RagEvalArgs {
    #[command(flatten)]
    pub server: ServerFlags,
    /// SQuAD v1.1-format JSON file.
    #[arg(long)]
    pub squad: PathBuf,
    /// Collection the paragraphs go into.
    #[arg(long, default_value = "squad-eval")]
    pub collection: String,
    /// Keep the collection if it already holds every paragraph.
    #[arg(long)]
    pub reuse: bool,
    /// Chunk size and overlap (tokens) of the collection.
    #[arg(long, default_value_t = 200)]
    pub chunk_tokens: usize,
    #[arg(long, default_value_t = 32)]
    pub chunk_overlap: usize,
    /// Questions for the retrieval metrics (evenly spaced; 0 = all).
    #[arg(long, default_value_t = 2000)]
    pub retrieval_questions: usize,
    /// Search modes whose recall is measured, in this order.
    #[arg(long, value_delimiter = ',', default_value = "dense,lexical,hybrid",
          value_parser = ["dense", "lexical", "hybrid"])]
    pub modes: Vec<String>,
    /// Hybrid searches' fusion: `rrf` (the server's default) or `weighted`.
    #[arg(long, value_parser = ["rrf", "weighted"])]
    pub fusion: Option<String>,
    /// Hybrid searches' reciprocal-rank-fusion k (with `rrf`; server default 60).
    #[arg(long)]
    pub rrf_k: Option<f64>,
    /// Hybrid searches' share of the dense score (with `weighted`; server default 0.5).
    #[arg(long)]
    pub dense_weight: Option<f64>,
    /// The server's reranker (its model id): adds a `hybrid+rerank` row,
    /// hybrid candidates reordered by `POST /v1/rerank`.
    #[arg(long)]
    pub reranker: Option<String>,
    /// Hybrid candidates the reranker reorders.
    #[arg(long, default_value_t = 40)]
    pub rerank_candidates: usize,
    /// Search mode of the answers' retrieval.
    #[arg(long, default_value = "hybrid", value_parser = ["dense", "lexical", "hybrid"])]
    pub rag_mode: String,
    /// Questions answered by the generator (evenly spaced).
    #[arg(long, default_value_t = 100)]
    pub answer_questions: usize,
    /// Chunks the answers are built from.
    #[arg(long, default_value_t = 4)]
    pub rag_top_k: usize,
    /// Tokens per answer.
    #[arg(long, default_value_t = 48)]
    pub max_tokens: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Write the report as JSON to this file (`-` for standard output).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Every `n`-th item so that `want` items spread over the whole list.
fn spread<T: Clone>(items: &[T], want: usize) -> Vec<T> {
    if want == 0 || want >= items.len() {
        return items.to_vec();
    }
    (0..want).map(|i| items[i * items.len() / want].clone()).collect()
}

async fn load(client: &Client, args: &RagEvalArgs, paragraphs: &[Paragraph]) -> anyhow::Result<Option<f64>> {
    let path = format!("/v1/collections/{}", args.collection);
    let (status, existing) = client.call(Method::GET, &path, None).await?;
    if status == 200 {
        if args.reuse && existing["documents"].as_u64() == Some(paragraphs.len() as u64) {
            eprintln!("eval rag: reusing collection `{}`", args.collection);
            return Ok(None);
        }
        client.ok(Method::DELETE, &path, None).await?;
    }
    let body = json!({"name": args.collection, "chunk_tokens": args.chunk_tokens, "chunk_overlap": args.chunk_overlap});
    client.ok(Method::POST, "/v1/collections", Some(&body)).await?;
    let bar = progress(paragraphs.len() as u64, "paragraphs");
    let t0 = Instant::now();
    let docs_path = format!("{path}/documents");
    let batches: Vec<&[Paragraph]> = paragraphs.chunks(32).collect();
    let mut results = stream::iter(batches)
        .map(|batch| {
            let docs: Vec<Value> = batch
                .iter()
                .map(|p| json!({"id": p.id, "text": p.text, "metadata": {"title": p.title}}))
                .collect();
            let n = batch.len() as u64;
            let body = json!({"documents": docs});
            let docs_path = &docs_path;
            async move { client.ok(Method::POST, docs_path, Some(&body)).await.map(|_| n) }
        })
        .buffer_unordered(2);
    while let Some(r) = results.next().await {
        bar.inc(r?);
    }
    bar.finish();
    Ok(Some(paragraphs.len() as f64 / t0.elapsed().as_secs_f64()))
}

/// The hybrid-search fusion settings given on the command line, as search
/// body fields (none: the server's defaults).
fn fusion_fields(args: &RagEvalArgs) -> serde_json::Map<String, Value> {
    let mut fields = serde_json::Map::new();
    for (name, value) in [
        ("fusion", args.fusion.as_ref().map(|f| json!(f))),
        ("rrf_k", args.rrf_k.map(|k| json!(k))),
        ("dense_weight", args.dense_weight.map(|w| json!(w))),
    ] {
        if let Some(v) = value {
            fields.insert(name.into(), v);
        }
    }
    fields
}

/// Recall is measured at these depths (distinct documents).
const RECALL_AT: [usize; 3] = [1, 5, 10];

/// The row of hybrid candidates reordered by the reranker.
const RERANKED: &str = "hybrid+rerank";

/// `hits` (search hits) reordered by the reranker `model`'s scores for
/// `query`.
async fn rerank(client: &Client, model: &str, query: &str, hits: Vec<Value>) -> anyhow::Result<Vec<Value>> {
    if hits.is_empty() {
        return Ok(hits);
    }
    let texts: Vec<&Value> = hits.iter().map(|h| &h["text"]).collect();
    let body = json!({"model": model, "query": query, "documents": texts});
    let v = client.ok(Method::POST, "/v1/rerank", Some(&body)).await?;
    let order = (v["results"].as_array().into_iter().flatten()).filter_map(|r| r["index"].as_u64());
    Ok(order.filter_map(|i| hits.get(i as usize).cloned()).collect())
}

#[derive(Default)]
struct Retrieval {
    /// Questions whose paragraph is among the first `RECALL_AT[i]`.
    found: [usize; RECALL_AT.len()],
    n: usize,
    latency: Vec<f64>,
    /// The embedding model the server named.
    model: String,
}

async fn retrieval(
    client: &Client,
    args: &RagEvalArgs,
    mode: &str,
    questions: &[Question],
) -> anyhow::Result<Retrieval> {
    let path = format!("/v1/collections/{}/search", args.collection);
    let mut out = Retrieval::default();
    let top_k = RECALL_AT[RECALL_AT.len() - 1];
    let reranker = args.reranker.as_deref().filter(|_| mode == RERANKED);
    let (search_mode, top_k) = match reranker {
        Some(_) => ("hybrid", args.rerank_candidates.max(top_k)),
        None => (mode, top_k),
    };
    let mut results = stream::iter(questions)
        .map(|q| {
            let mut body = json!({"query": q.text, "top_k": top_k, "mode": search_mode});
            if search_mode == "hybrid" {
                body.as_object_mut().unwrap().extend(fusion_fields(args));
            }
            let path = &path;
            async move {
                let t0 = Instant::now();
                let v = client.ok(Method::POST, path, Some(&body)).await?;
                let mut hits = v["data"].as_array().cloned().unwrap_or_default();
                if let Some(model) = reranker {
                    hits = rerank(client, model, &q.text, hits).await?;
                }
                let mut docs: Vec<String> = Vec::new();
                for hit in &hits {
                    let d = hit["document_id"].as_str().unwrap_or_default().to_string();
                    if !docs.contains(&d) {
                        docs.push(d);
                    }
                }
                let model = v["model"].as_str().unwrap_or_default().to_string();
                anyhow::Ok((q.paragraph.clone(), docs, model, t0.elapsed().as_secs_f64()))
            }
        })
        .buffer_unordered(args.concurrency.max(1));
    while let Some(r) = results.next().await {
        let (gold, docs, model, secs) = r?;
        out.n += 1;
        for (found, k) in out.found.iter_mut().zip(RECALL_AT) {
            *found += usize::from(docs.iter().take(k).any(|d| *d == gold));
        }
        out.latency.push(secs);
        out.model = model;
    }
    Ok(out)
}

impl Retrieval {
    fn report(&self) -> Value {
        let mut v = json!({
            "questions": self.n,
            "latency_ms_p50": ms(&self.latency, 50.0),
            "latency_ms_p99": ms(&self.latency, 99.0),
        });
        for (found, k) in self.found.iter().zip(RECALL_AT) {
            v[format!("recall_at_{k}")] = json!(ratio(*found, self.n));
        }
        v
    }
}

#[derive(Default)]
struct Answers {
    n: usize,
    em: usize,
    f1: f64,
    dont_know: usize,
    gold_in_sources: usize,
    latency: Vec<f64>,
    examples: Vec<Value>,
}

async fn answers(
    client: &Client,
    args: &RagEvalArgs,
    model: &str,
    questions: &[Question],
) -> anyhow::Result<Answers> {
    let mut out = Answers::default();
    let mut results = stream::iter(questions)
        .map(|q| {
            let body = json!({
                "model": model,
                "messages": [{"role": "user", "content": q.text}],
                "rag": {"collection": args.collection, "top_k": args.rag_top_k, "mode": args.rag_mode},
                "temperature": 0,
                "max_tokens": args.max_tokens,
            });
            async move {
                let t0 = Instant::now();
                let v = client
                    .ok(Method::POST, "/v1/chat/completions", Some(&body))
                    .await?;
                anyhow::Ok((q, v, t0.elapsed().as_secs_f64()))
            }
        })
        .buffer_unordered(args.concurrency.max(1));
    while let Some(r) = results.next().await {
        let (q, v, secs) = r?;
        let answer = v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_string();
        let (em, f1) = squad::best(&answer, &q.answers);
        let in_sources = v["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["document_id"].as_str() == Some(q.paragraph.as_str()));
        out.n += 1;
        out.em += usize::from(em);
        out.f1 += f1;
        out.dont_know += usize::from(squad::is_dont_know(&answer));
        out.gold_in_sources += usize::from(in_sources);
        out.latency.push(secs);
        if out.examples.len() < 5 {
            out.examples
                .push(json!({"question": q.text, "answer": answer, "gold": q.answers, "f1": f1}));
        }
    }
    Ok(out)
}

fn ratio(a: usize, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        a as f64 / n as f64
    }
}

fn ms(xs: &[f64], p: f64) -> Option<f64> {
    percentile(xs, p).map(|s| (s * 1e4).round() / 10.0)
}

pub fn run(args: RagEvalArgs) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&args.squad).with_context(|| format!("reading {}", args.squad.display()))?;
    let json: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", args.squad.display()))?;
    let (paragraphs, questions) = squad::parse(&json)?;
    anyhow::ensure!(!questions.is_empty(), "{}: no questions", args.squad.display());
    runtime()?.block_on(async move {
        let client = Client::from_flags(&args.server)?;
        let url = client.url.clone();
        eprintln!(
            "eval rag: {} paragraphs, {} questions from {}",
            paragraphs.len(),
            questions.len(),
            args.squad.display()
        );
        let ingest_rate = load(&client, &args, &paragraphs).await?;
        let sampled = spread(&questions, args.retrieval_questions);
        let mut by_mode = serde_json::Map::new();
        let mut embedder = String::new();
        let reranked = args.reranker.as_ref().map(|_| RERANKED.to_string());
        for mode in args.modes.iter().chain(&reranked) {
            eprintln!("eval rag: retrieval, mode {mode}");
            let r = retrieval(&client, &args, mode, &sampled).await?;
            by_mode.insert(mode.clone(), r.report());
            embedder = r.model;
        }
        let a = if args.answer_questions > 0 {
            let model = first_model(&client.http, &url, client.api_key.as_deref()).await?;
            answers(&client, &args, &model, &spread(&questions, args.answer_questions)).await?
        } else {
            Answers::default()
        };
        let report = json!({
            "squad": args.squad.display().to_string(),
            "paragraphs": paragraphs.len(),
            "ingest_paragraphs_per_second": ingest_rate,
            "embedding_model": embedder,
            "retrieval_questions": sampled.len(),
            "retrieval": by_mode,
            "hybrid_fusion": fusion_fields(&args),
            "reranker": args.reranker,
            "rerank_candidates": args.reranker.as_ref().map(|_| args.rerank_candidates),
            "answers": {
                "questions": a.n,
                "rag_top_k": args.rag_top_k,
                "rag_mode": args.rag_mode,
                "exact_match": ratio(a.em, a.n),
                "f1": if a.n == 0 { 0.0 } else { a.f1 / a.n as f64 },
                "dont_know_rate": ratio(a.dont_know, a.n),
                "gold_paragraph_in_sources": ratio(a.gold_in_sources, a.n),
                "latency_ms_p50": ms(&a.latency, 50.0),
                "latency_ms_p99": ms(&a.latency, 99.0),
                "examples": a.examples,
            },
        });
        print_table(&report);
        if let Some(path) = &args.json {
            let text = serde_json::to_string_pretty(&report)?;
            if path.as_os_str() == "-" {
                println!("{text}");
            } else {
                std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Ok(())
    })
}

fn print_table(r: &Value) {
    let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.3}"));
    println!(
        "retrieval: {} questions, {} paragraphs, embedder {}, hybrid fusion {}",
        r["retrieval_questions"], r["paragraphs"], r["embedding_model"], r["hybrid_fusion"]
    );
    println!(
        "{:<13} {:>9} {:>9} {:>9} {:>22}",
        "mode", "recall@1", "recall@5", "recall@10", "latency p50 / p99 ms"
    );
    for (mode, m) in r["retrieval"].as_object().into_iter().flatten() {
        let latency = format!("{} / {}", m["latency_ms_p50"], m["latency_ms_p99"]);
        println!(
            "{mode:<13} {:>9} {:>9} {:>9} {latency:>22}",
            f(&m["recall_at_1"]),
            f(&m["recall_at_5"]),
            f(&m["recall_at_10"]),
        );
    }
    let ans = &r["answers"];
    println!();
    println!("{:<34} {:>10}", "metric", "value");
    let rows = [
        ("ingest paragraphs/s", f(&r["ingest_paragraphs_per_second"])),
        ("answered questions", ans["questions"].to_string()),
        ("answer retrieval mode", ans["rag_mode"].to_string()),
        ("exact match", f(&ans["exact_match"])),
        ("F1", f(&ans["f1"])),
        ("don't know rate", f(&ans["dont_know_rate"])),
        ("gold paragraph in sources", f(&ans["gold_paragraph_in_sources"])),
        (
            "answer latency p50 / p99 ms",
            format!("{} / {}", ans["latency_ms_p50"], ans["latency_ms_p99"]),
        ),
    ];
    for (name, value) in rows {
        println!("{name:<34} {value:>10}");
    }
}
