//! ragd's HNSW shard on real MiniLM vectors: recall@10 against exact search,
//! build time and single-thread queries/s at several `ef_search` values.
//! `benches/hnsw_vs_hnswlib.sh` runs it next to hnswlib on the same files.
//!
//! ```text
//! hnsw_bench embed [--squad FILE] [--models-dir DIR] [--data DIR] [--min-base N] [--batch N] [--force]
//! hnsw_bench bench [--data DIR] [--ef 16,32,64,96,128,256] [--timing-queries N] [--runs N] [--ef-construction N]
//! ```
//!
//! `embed` embeds SQuAD v1.1 dev with ragd's own all-MiniLM-L6-v2 embedder:
//! every question is a query; the base set is every paragraph, every
//! sentence and 32-word windows of the paragraphs (stride 8, then the
//! windows half a stride later while the set is under `--min-base`),
//! without exact duplicates. It writes `base.npy`, `queries.npy` (f32,
//! L2-normalised rows) and `meta.json` under `--data` (default
//! `~/.cache/ragd/bench`), and does nothing when they exist (`--force`).
//!
//! `bench` computes (once, cached as `gt_ids.npy` / `gt_dist.npy`) the exact
//! top 10 of every query by brute force, builds the shard with the default
//! `HnswParams` through the code a collection uses (rayon threads:
//! `RAYON_NUM_THREADS`), then for each `ef` measures recall@10 over all
//! queries and queries/s of one thread over `--timing-queries` evenly
//! spaced queries (best and median of `--runs`). A table goes to stderr and
//! one JSON object to stdout.
//!
//! Recall counts a returned vector as correct when it is among the exact
//! top 10 or no farther than the exact 10th (ties between equal vectors).

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ragd_core::{Embedder, TextTokenizer, TokenBatch};
use ragd_index::bench::{le_f32, le_i32, read_npy, read_npy_f32, recall_hits, BenchShard, Mat};
use ragd_index::HnswParams;
use ragd_kernels::vector::dot;
use ragd_models::{BertEmbedder, Device};
use rayon::prelude::*;
use serde_json::{json, Value};

const K: usize = 10;
const WINDOW_WORDS: usize = 32;
const WINDOW_STRIDE: usize = 8;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() {
    if let Err(e) = run() {
        eprintln!("hnsw_bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args.split_first().ok_or(USAGE)?;
    let opts = Opts::parse(rest)?;
    match cmd.as_str() {
        "embed" => embed(&opts),
        "bench" => bench(&opts),
        _ => Err(USAGE.into()),
    }
}

const USAGE: &str = "usage: hnsw_bench embed|bench [--data DIR] [--squad FILE] [--models-dir DIR] \
                     [--min-base N] [--batch N] [--force] [--ef LIST] [--timing-queries N] [--runs N] \
                     [--ef-construction N]";

struct Opts {
    data: PathBuf,
    squad: PathBuf,
    models_dir: PathBuf,
    min_base: usize,
    batch: usize,
    force: bool,
    efs: Vec<usize>,
    timing_queries: usize,
    runs: usize,
    /// Overrides the default `HnswParams::ef_construction` (to explore).
    ef_construction: Option<usize>,
}

impl Opts {
    fn parse(args: &[String]) -> Res<Self> {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        let mut o = Opts {
            data: home.join(".cache/ragd/bench"),
            squad: repo.join("../shared/data/squaddev_v1.1.json"),
            models_dir: std::env::var_os("RAGD_MODELS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo.join("models/cache")),
            min_base: 50_000,
            batch: 64,
            force: false,
            efs: vec![16, 32, 64, 96, 128, 256],
            timing_queries: 2_000,
            runs: 3,
            ef_construction: None,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "--force" {
                o.force = true;
                continue;
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--data" => o.data = value.into(),
                "--squad" => o.squad = value.into(),
                "--models-dir" => o.models_dir = value.into(),
                "--min-base" => o.min_base = value.parse()?,
                "--batch" => o.batch = value.parse::<usize>()?.max(1),
                "--ef" => {
                    o.efs = value
                        .split(',')
                        .map(|s| s.trim().parse())
                        .collect::<Result<_, _>>()?
                }
                "--timing-queries" => o.timing_queries = value.parse::<usize>()?.max(1),
                "--runs" => o.runs = value.parse::<usize>()?.max(1),
                "--ef-construction" => o.ef_construction = Some(value.parse()?),
                _ => return Err(format!("unknown option {flag}\n{USAGE}").into()),
            }
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------- texts

struct Texts {
    queries: Vec<String>,
    base: Vec<String>,
    counts: Value,
}

/// Splits after `.`, `?` or `!` followed by a space and a capital letter,
/// digit, quote or bracket; keeps sentences of at least 3 words.
fn sentences(paragraph: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = paragraph.char_indices().collect();
    for w in chars.windows(3) {
        let ((_, end), (_, space), (next_at, next)) = (w[0], w[1], w[2]);
        if matches!(end, '.' | '?' | '!')
            && space.is_whitespace()
            && (next.is_uppercase() || next.is_ascii_digit() || matches!(next, '"' | '\'' | '('))
        {
            out.push(paragraph[start..next_at].trim());
            start = next_at;
        }
    }
    out.push(paragraph[start..].trim());
    out.retain(|s| s.split_whitespace().count() >= 3);
    out
}

fn squad_texts(path: &Path, min_base: usize) -> Res<Texts> {
    let squad: Value =
        serde_json::from_slice(&std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?)?;
    let mut paragraphs = Vec::new();
    let mut queries = Vec::new();
    for article in squad["data"].as_array().ok_or("no data array")? {
        for p in article["paragraphs"].as_array().ok_or("no paragraphs")? {
            paragraphs.push(p["context"].as_str().ok_or("no context")?.to_string());
            for qa in p["qas"].as_array().ok_or("no qas")? {
                queries.push(qa["question"].as_str().ok_or("no question")?.to_string());
            }
        }
    }
    let mut seen = HashSet::new();
    let mut base = Vec::new();
    let mut add = |base: &mut Vec<String>, t: String| {
        if seen.insert(t.clone()) {
            base.push(t);
        }
    };
    for p in &paragraphs {
        add(&mut base, p.clone());
    }
    let n_paragraphs = base.len();
    for p in &paragraphs {
        for s in sentences(p) {
            add(&mut base, s.to_string());
        }
    }
    let n_sentences = base.len() - n_paragraphs;
    let words: Vec<Vec<&str>> = paragraphs
        .iter()
        .map(|p| p.split_whitespace().collect())
        .collect();
    let mut windows_per_offset = Vec::new();
    // Offsets 0, 4, 2, 6, ...: each pass adds the windows between the last.
    for offset in [0, WINDOW_STRIDE / 2, WINDOW_STRIDE / 4, 3 * WINDOW_STRIDE / 4] {
        if offset > 0 && base.len() >= min_base {
            break;
        }
        let before = base.len();
        for w in &words {
            let mut start = offset;
            while start + WINDOW_WORDS <= w.len() {
                add(&mut base, w[start..start + WINDOW_WORDS].join(" "));
                start += WINDOW_STRIDE;
            }
        }
        windows_per_offset.push(json!({"offset": offset, "windows": base.len() - before}));
    }
    if base.len() < min_base {
        return Err(format!("only {} base texts (< {min_base})", base.len()).into());
    }
    let counts = json!({
        "queries": queries.len(),
        "base": base.len(),
        "paragraphs": n_paragraphs,
        "sentences": n_sentences,
        "window_words": WINDOW_WORDS,
        "window_stride": WINDOW_STRIDE,
        "windows": windows_per_offset,
    });
    Ok(Texts {
        queries,
        base,
        counts,
    })
}

// ---------------------------------------------------------------- embed

fn embed(o: &Opts) -> Res<()> {
    let (base_path, queries_path) = (o.data.join("base.npy"), o.data.join("queries.npy"));
    if !o.force && base_path.is_file() && queries_path.is_file() {
        eprintln!("vectors already in {} (--force to redo)", o.data.display());
        return Ok(());
    }
    std::fs::create_dir_all(&o.data)?;
    let texts = squad_texts(&o.squad, o.min_base)?;
    eprintln!("texts: {}", texts.counts);
    let model_dir = o.models_dir.join("all-minilm-l6-v2");
    let (mut model, tokenizer) = BertEmbedder::load(&model_dir, "all-minilm-l6-v2", &Device::Cpu)
        .map_err(|e| format!("{}: {e} (run models/fetch)", model_dir.display()))?;
    let dim = model.dim();
    let threads = rayon::current_num_threads();
    let t0 = Instant::now();
    let mut embed_all = |name: &str, texts: &[String]| -> Res<Vec<f32>> {
        let framing = model.info().framing.clone();
        let seqs: Vec<Vec<u32>> = texts
            .par_iter()
            .map(|t| Ok(framing.frame(&tokenizer.encode(t)?).remove(0)))
            .collect::<ragd_core::Result<_>>()?;
        let start = Instant::now();
        let mut out = Vec::with_capacity(texts.len() * dim);
        for (i, batch) in seqs.chunks(o.batch).enumerate() {
            for v in model.embed(&TokenBatch::from_sequences(batch))? {
                out.extend_from_slice(&v);
            }
            if i % 100 == 99 {
                let done = (i + 1) * o.batch;
                let rate = done as f64 / start.elapsed().as_secs_f64();
                eprintln!("  {name}: {done}/{} ({rate:.0}/s)", texts.len());
            }
        }
        eprintln!(
            "{name}: {} texts in {:.1} s ({threads} threads)",
            texts.len(),
            start.elapsed().as_secs_f64()
        );
        Ok(out)
    };
    let queries = embed_all("queries", &texts.queries)?;
    let base = embed_all("base", &texts.base)?;
    write_npy(
        &queries_path,
        "<f4",
        texts.queries.len(),
        dim,
        &f32_bytes(&queries),
    )?;
    write_npy(&base_path, "<f4", texts.base.len(), dim, &f32_bytes(&base))?;
    let meta = json!({
        "model": "all-minilm-l6-v2 (ragd BertEmbedder, CPU)",
        "source": o.squad.display().to_string(),
        "dim": dim,
        "counts": texts.counts,
        "embed_threads": threads,
        "embed_s": t0.elapsed().as_secs_f64(),
    });
    std::fs::write(o.data.join("meta.json"), serde_json::to_vec_pretty(&meta)?)?;
    eprintln!("wrote {} and {}", base_path.display(), queries_path.display());
    Ok(())
}

// ---------------------------------------------------------------- bench

/// Exact top `K` (ids, cosine distances) of every query, nearest first.
/// Queries go in blocks so that each base row is read once per block.
fn ground_truth(base: &Mat, queries: &Mat) -> (Vec<i32>, Vec<f32>) {
    const BLOCK: usize = 16;
    let ids: Vec<usize> = (0..queries.rows).collect();
    let tops: Vec<Vec<(f32, usize)>> = ids
        .par_chunks(BLOCK)
        .flat_map_iter(|block| {
            let mut tops: Vec<Vec<(f32, usize)>> = vec![Vec::with_capacity(K + 1); block.len()];
            for j in 0..base.rows {
                let b = base.row(j);
                for (top, &q) in tops.iter_mut().zip(block) {
                    let d = 1.0 - dot(queries.row(q), b);
                    if top.len() < K || d < top[K - 1].0 {
                        let at = top.partition_point(|&(e, _)| e <= d);
                        top.insert(at, (d, j));
                        top.truncate(K);
                    }
                }
            }
            tops
        })
        .collect();
    let gt_ids = tops.iter().flatten().map(|&(_, j)| j as i32).collect();
    let gt_dist = tops.iter().flatten().map(|&(d, _)| d).collect();
    (gt_ids, gt_dist)
}

fn bench(o: &Opts) -> Res<()> {
    let base = read_npy_f32(&o.data.join("base.npy"))?;
    let queries = read_npy_f32(&o.data.join("queries.npy"))?;
    if base.dim != queries.dim {
        return Err("base and queries differ in dimension".into());
    }
    let threads = rayon::current_num_threads();
    eprintln!(
        "base {} x {}, queries {}, rayon threads {threads}",
        base.rows, base.dim, queries.rows
    );

    let (gt_ids_path, gt_dist_path) = (o.data.join("gt_ids.npy"), o.data.join("gt_dist.npy"));
    let fresh = |p: &Path| -> bool {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        matches!((modified(p), modified(&o.data.join("base.npy"))), (Some(a), Some(b)) if a >= b)
    };
    let cached = if fresh(&gt_ids_path) && fresh(&gt_dist_path) {
        let (ids, dist) = (read_npy(&gt_ids_path, "<i4")?, read_npy(&gt_dist_path, "<f4")?);
        (ids.rows == queries.rows && ids.dim == K && dist.rows == queries.rows)
            .then(|| (le_i32(&ids.bytes), le_f32(&dist.bytes)))
    } else {
        None
    };
    let (gt_ids, gt_dist) = match cached {
        Some(gt) => gt,
        None => {
            let t = Instant::now();
            let (ids, dist) = ground_truth(&base, &queries);
            eprintln!(
                "exact top {K}: {:.1} s ({threads} threads)",
                t.elapsed().as_secs_f64()
            );
            let id_bytes: Vec<u8> = ids.iter().flat_map(|x| x.to_le_bytes()).collect();
            write_npy(&gt_ids_path, "<i4", queries.rows, K, &id_bytes)?;
            write_npy(&gt_dist_path, "<f4", queries.rows, K, &f32_bytes(&dist))?;
            (ids, dist)
        }
    };

    let mut params = HnswParams::default();
    params.ef_construction = o.ef_construction.unwrap_or(params.ef_construction);
    let rows: Vec<&[f32]> = (0..base.rows).map(|i| base.row(i)).collect();
    let mut efs = o.efs.clone();
    if !efs.contains(&params.ef_search) {
        efs.push(params.ef_search);
    }
    efs.sort_unstable();
    efs.dedup();
    let run = Run {
        o,
        base: &base,
        queries: &queries,
        gt_ids: &gt_ids,
        gt_dist: &gt_dist,
        efs: &efs,
        params: &params,
    };

    let t = Instant::now();
    let shard = BenchShard::build(&params, &rows);
    let build_s = t.elapsed().as_secs_f64();
    assert_eq!(shard.len(), base.rows);
    let out = run.measure(
        "ragd",
        "ragd-index shard (hnsw_rs 0.3.5, unit vectors, f32 dot)",
        build_s,
        &|q, ef| shard.search(q, K, ef).into_iter().map(|h| h.0).collect(),
    );
    println!("{out}");
    Ok(())
}

/// What every index is measured on.
struct Run<'a> {
    o: &'a Opts,
    base: &'a Mat,
    queries: &'a Mat,
    gt_ids: &'a [i32],
    gt_dist: &'a [f32],
    efs: &'a [usize],
    params: &'a HnswParams,
}

impl Run<'_> {
    /// Recall@10 over all queries and single-thread queries/s over the
    /// timing queries, for each ef, of an index built in `build_s`;
    /// `search(query, ef)` returns ids, nearest first.
    fn measure(
        &self,
        engine: &str,
        index: &str,
        build_s: f64,
        search: &(dyn Fn(&[f32], usize) -> Vec<u64> + Sync),
    ) -> Value {
        let (o, base, queries) = (self.o, self.base, self.queries);
        let threads = rayon::current_num_threads();
        let params = self.params;
        eprintln!(
            "{engine} build: {build_s:.2} s, {threads} threads (M {}, ef_construction {})",
            params.m, params.ef_construction
        );
        let n_timing = o.timing_queries.min(queries.rows);
        let timing: Vec<usize> = (0..n_timing).map(|i| i * queries.rows / n_timing).collect();
        // Warm-up: caches, page faults, CPU frequency.
        for &q in &timing {
            std::hint::black_box(search(queries.row(q), self.efs[0]));
        }
        eprintln!(
            "{:>5} {:>9} {:>10} {:>10}  (QPS: 1 thread, {n_timing} queries, best/median of {})",
            "ef", "recall@10", "QPS best", "QPS med", o.runs
        );
        let mut results = Vec::new();
        for &ef in self.efs {
            let correct: usize = (0..queries.rows)
                .into_par_iter()
                .map(|q| {
                    let (ids, dist) = (&self.gt_ids[q * K..][..K], &self.gt_dist[q * K..][..K]);
                    recall_hits(base, queries.row(q), &search(queries.row(q), ef), ids, dist, K)
                })
                .sum();
            let recall = correct as f64 / (queries.rows * K) as f64;
            let mut qps: Vec<f64> = (0..o.runs)
                .map(|_| {
                    let t = Instant::now();
                    for &q in &timing {
                        std::hint::black_box(search(queries.row(q), ef));
                    }
                    n_timing as f64 / t.elapsed().as_secs_f64()
                })
                .collect();
            qps.sort_by(f64::total_cmp);
            let (best, median) = (qps[qps.len() - 1], qps[qps.len() / 2]);
            let default = if ef == params.ef_search { "  (default)" } else { "" };
            eprintln!("{ef:>5} {recall:>9.4} {best:>10.0} {median:>10.0}{default}");
            results.push(json!({
                "ef": ef, "recall": recall, "qps_best": best, "qps_median": median, "qps_runs": qps,
            }));
        }
        json!({
            "engine": engine,
            "index": index,
            "n_base": base.rows,
            "dim": base.dim,
            "n_queries": queries.rows,
            "n_timing_queries": n_timing,
            "k": K,
            "m": params.m,
            "ef_construction": params.ef_construction,
            "default_ef": params.ef_search,
            "build_threads": threads,
            "build_s": build_s,
            "query_threads": 1,
            "runs": o.runs,
            "results": results,
        })
    }
}

// ---------------------------------------------------------------- .npy

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A 2-D `.npy` (format 1.0), written to a temporary name and renamed.
fn write_npy(path: &Path, descr: &str, rows: usize, cols: usize, data: &[u8]) -> Res<()> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let tmp = path.with_extension("npy.tmp");
    let mut f = BufWriter::new(std::fs::File::create(&tmp)?);
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    f.write_all(data)?;
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
