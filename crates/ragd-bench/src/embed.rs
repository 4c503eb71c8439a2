//! `ragd bench embed`: embedding throughput on SQuAD questions (short) and
//! paragraphs (passages), in-process, timed as the median of several runs.
//! `benches/embed_throughput.sh` runs it beside sentence-transformers on the
//! same texts.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use ragd_core::{Embedder, TextTokenizer, TokenBatch};
use serde_json::{json, Value};

use crate::stats::median;

/// The models folder (`ragd bench embed` loads its embedder from it; the
/// same flag as the server's).
#[derive(Debug, Clone, Args)]
pub struct ModelsDir {
    /// Folder holding models by name (what `models/fetch` fills).
    #[arg(long, env = "RAGD_MODELS_DIR", default_value = "models/cache")]
    pub models_dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct EmbedBenchArgs {
    /// SQuAD-format JSON file (questions and paragraphs are the inputs).
    #[arg(
        long,
        env = "RAGD_BENCH_SQUAD",
        default_value = "../shared/data/squaddev_v1.1.json"
    )]
    pub squad: PathBuf,
    /// Texts of each kind.
    #[arg(long, env = "RAGD_BENCH_N", default_value_t = 1024)]
    pub n: usize,
    /// Sequences per forward pass.
    #[arg(long, env = "RAGD_BENCH_BATCH", default_value_t = 32)]
    pub batch: usize,
    /// Timed runs (the median is reported), after one warm-up run.
    #[arg(long, env = "RAGD_BENCH_RUNS", default_value_t = 3)]
    pub runs: usize,
    /// Embedding model name or folder.
    #[arg(long, env = "RAGD_EMBEDDER", default_value = "all-minilm-l6-v2")]
    pub embedder: String,
    #[command(flatten)]
    pub dir: ModelsDir,
    /// Print one JSON object instead of a table.
    #[arg(long, env = "RAGD_BENCH_JSON")]
    pub json: bool,
}

/// The first `n` distinct questions and the first `n` distinct paragraphs of
/// a SQuAD file, in file order (`benches/embed_peer.py` picks the same).
pub fn squad_texts(path: &Path, n: usize) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let (mut questions, mut paragraphs) = (Vec::new(), Vec::new());
    let mut seen = std::collections::HashSet::new();
    let articles = doc["data"].as_array().context("no `data` array")?;
    for para in articles
        .iter()
        .flat_map(|a| a["paragraphs"].as_array().into_iter().flatten())
    {
        if let Some(ctx) = para["context"].as_str() {
            if paragraphs.len() < n && seen.insert(ctx.to_string()) {
                paragraphs.push(ctx.to_string());
            }
        }
        for qa in para["qas"].as_array().into_iter().flatten() {
            if let Some(q) = qa["question"].as_str() {
                if questions.len() < n && seen.insert(q.to_string()) {
                    questions.push(q.to_string());
                }
            }
        }
    }
    Ok((questions, paragraphs))
}

/// Tokenizes, frames and embeds `texts` in batches of `batch` sorted by
/// length (as sentence-transformers' `encode` does). Returns sentences/s.
fn throughput(
    model: &mut dyn Embedder,
    tok: &dyn TextTokenizer,
    texts: &[String],
    batch: usize,
) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let framing = model.info().framing.clone();
    let mut seqs = texts
        .iter()
        .map(|t| Ok(framing.frame(&tok.encode(t)?).remove(0)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    seqs.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for chunk in seqs.chunks(batch) {
        model.embed(&TokenBatch::from_sequences(chunk))?;
    }
    Ok(texts.len() as f64 / t0.elapsed().as_secs_f64())
}

pub fn run(args: EmbedBenchArgs) -> anyhow::Result<()> {
    let dir = ragd_models::resolve_model_dir(&args.embedder, &args.dir.models_dir)?
        .context("an embedder is required")?;
    let (mut model, tok) =
        ragd_models::embed::load_embedder(&dir, &ragd_models::model_id(&dir)?, &ragd_models::Device::Cpu)?;
    let (questions, paragraphs) = squad_texts(&args.squad, args.n)?;
    let mut results = serde_json::Map::new();
    for (name, texts) in [("queries", &questions), ("passages", &paragraphs)] {
        throughput(
            model.as_mut(),
            tok.as_ref(),
            &texts[..texts.len().min(64)],
            args.batch,
        )?;
        let runs = (0..args.runs.max(1))
            .map(|_| throughput(model.as_mut(), tok.as_ref(), texts, args.batch))
            .collect::<anyhow::Result<Vec<_>>>()?;
        results.insert(
            name.into(),
            json!({"texts": texts.len(), "sentences_per_second": median(&runs), "runs": runs}),
        );
    }
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    let out = json!({"engine": "ragd", "batch": args.batch, "threads": threads, "results": results});
    if args.json {
        println!("{out}");
    } else {
        for (name, r) in &results {
            println!(
                "ragd {name:<9} {:>5} texts  {:>8.1} sentences/s",
                r["texts"],
                r["sentences_per_second"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}
