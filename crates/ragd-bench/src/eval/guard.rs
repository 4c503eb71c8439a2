//! `ragd eval guard FILE.jsonl`: how well a guard separates attacks from
//! benign texts on a labelled file, per source and overall (TPR, FPR,
//! precision, ROC-AUC, TPR at FPR 1% and 5%).
//!
//! The guard runs in-process, loaded as `ragd serve --guard` loads it, and
//! scores each text as the server does: the text is cut into the guard's
//! windows, and its score is the highest, over windows, of the probability
//! that the window is not benign.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use ragd_core::{Classifier, Framing, TextTokenizer, TokenBatch};
use ragd_models::guard::GuardThreshold;
use ragd_models::{resolve_model_dir, DeviceChoice};
use serde::Deserialize;
use serde_json::json;

use super::guard_metrics::{Report, Scored};
use crate::embed::ModelsDir;

#[derive(Debug, Clone, Args)]
pub struct GuardEvalArgs {
    /// Labelled JSONL, one `{"text", "label", "source"}` per line: label
    /// `benign`, or anything else for an attack (`injection`,
    /// `jailbreak`); `source` (optional) groups the per-source rows.
    pub file: PathBuf,
    /// Guard: a name in the models folder or a folder (NanoGuard, a
    /// DeBERTa-v2 classifier, or one trained by `ragd train guard`).
    #[arg(long, default_value = "nanoguard")]
    pub guard: String,
    #[command(flatten)]
    pub dir: ModelsDir,
    /// Operating threshold: a score (`0.5`), or a false-positive rate
    /// resolved from a trained guard's calibration (`fpr:0.01`).
    #[arg(long, default_value = "0.5")]
    pub threshold: GuardThreshold,
    /// Device: auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Score only the first N rows (0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Write the report as JSON to this file (`-` for standard output,
    /// instead of the table).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write every row's score to this JSONL file (`{"source", "label",
    /// "score", "flagged", "text"}`), to look at the misses and false alarms.
    #[arg(long)]
    pub scores: Option<PathBuf>,
}

/// One line of a labelled guard file.
#[derive(Debug, Clone, Deserialize)]
pub struct GuardRow {
    pub text: String,
    pub label: String,
    #[serde(default)]
    pub source: Option<String>,
    /// Near-duplicates share a group (the data script writes it).
    #[serde(default)]
    pub group: Option<String>,
}

impl GuardRow {
    pub fn is_attack(&self) -> bool {
        self.label != "benign"
    }
}

/// The rows of a labelled JSONL file (blank lines skipped).
pub fn read_rows(path: &Path) -> anyhow::Result<Vec<GuardRow>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a {{\"text\", \"label\"}} row", path.display(), i + 1))
        })
        .collect()
}

/// A guard loaded from its folder, scoring texts as the server does.
pub struct GuardScorer {
    pub id: String,
    classifier: Box<dyn Classifier>,
    tokenizer: Arc<dyn TextTokenizer>,
    framing: Framing,
}

/// Texts per classification call.
const TEXTS_PER_CALL: usize = 16;

impl GuardScorer {
    pub fn load(dir: &Path, device: &DeviceChoice) -> anyhow::Result<Self> {
        let device = device.open()?;
        let (classifier, tokenizer) = ragd_models::guard::load_guard(dir, &device)?;
        Ok(Self {
            id: classifier.info().id.clone(),
            framing: classifier.info().framing.clone(),
            classifier,
            tokenizer,
        })
    }

    /// Each text's injection score; `done(n)` after every `n` texts.
    pub fn score(&mut self, texts: &[&str], done: &mut dyn FnMut(usize)) -> anyhow::Result<Vec<f32>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(TEXTS_PER_CALL) {
            let mut batch = TokenBatch::new();
            let mut counts = Vec::with_capacity(chunk.len());
            for text in chunk {
                let windows = self.framing.frame(&self.tokenizer.encode(text)?);
                counts.push(windows.len());
                windows.iter().for_each(|w| batch.push(w));
            }
            let mut probs = self.classifier.classify(&batch)?.into_iter();
            for n in counts {
                // The worst window decides; every label but the first is unsafe.
                let worst = probs
                    .by_ref()
                    .take(n)
                    .map(|p| p[1..].iter().sum::<f32>())
                    .fold(0f32, f32::max);
                out.push(worst);
            }
            done(chunk.len());
        }
        Ok(out)
    }
}

pub fn run(args: GuardEvalArgs) -> anyhow::Result<()> {
    let mut rows = read_rows(&args.file)?;
    if args.limit > 0 {
        rows.truncate(args.limit);
    }
    let dir =
        resolve_model_dir(&args.guard, &args.dir.models_dir)?.context("--guard none: nothing to evaluate")?;
    let threshold = args.threshold.resolve(Some(&dir))?;
    let mut scorer = GuardScorer::load(&dir, &args.device)?;
    let file_source = args
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    let bar = ragd_client::progress(texts.len() as u64, "scoring");
    let t0 = Instant::now();
    let scores = scorer.score(&texts, &mut |n| bar.inc(n as u64))?;
    let seconds = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let scored: Vec<Scored> = rows
        .iter()
        .zip(scores)
        .map(|(r, score)| Scored {
            source: r.source.clone().unwrap_or_else(|| file_source.clone()),
            attack: r.is_attack(),
            score,
        })
        .collect();
    if let Some(path) = &args.scores {
        let lines: Vec<String> = rows
            .iter()
            .zip(&scored)
            .map(|(r, s)| {
                json!({"source": s.source, "label": r.label, "score": s.score, "flagged": s.score >= threshold, "text": r.text})
                    .to_string()
            })
            .collect();
        std::fs::write(path, lines.join("\n") + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let report = Report::new(&scored, threshold);
    let summary = json!({
        "guard": scorer.id,
        "file": args.file,
        "threshold": args.threshold.to_string(),
        "texts": rows.len(),
        "seconds": seconds,
        "report": report,
    });
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&summary)?;
        if path.as_os_str() == "-" {
            println!("{text}");
            return Ok(());
        }
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "guard {} on {}: {} texts in {seconds:.0} s ({:.1} texts/s), threshold {} = {threshold:.4}\n",
        scorer.id,
        args.file.display(),
        rows.len(),
        rows.len() as f64 / seconds.max(1e-9),
        args.threshold
    );
    println!("{}\n{}", report.table(), report.legend());
    Ok(())
}
