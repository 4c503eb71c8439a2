//! The model card (`README.md`) `ragd train guard` writes into the folder:
//! what it was trained on, how, its validation figures and thresholds.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::eval::guard::GuardRow;

use super::guard_args::{TrainGuardArgs, TrainSummary};

/// Rows per source and label.
fn counts(rows: &[&GuardRow]) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for r in rows {
        let source = r.source.clone().unwrap_or_else(|| "-".into());
        *out.entry((source, r.label.clone())).or_insert(0) += 1;
    }
    out
}

pub fn model_card(
    args: &TrainGuardArgs,
    s: &TrainSummary,
    train: &[&GuardRow],
    val: &[&GuardRow],
    train_windows: usize,
) -> String {
    let name = args
        .out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let c = &s.config;
    let encoders: Vec<String> = c
        .encoders
        .iter()
        .map(|e| match e.kind.has_folder() {
            true => format!("{:?} (`{}`, {} values)", e.kind, e.path, e.dim),
            false => format!("hashed character 2-5-grams ({} buckets)", e.dim),
        })
        .collect();
    let head = if c.hidden == 0 {
        "logistic regression".to_string()
    } else {
        format!("an MLP with one hidden layer of {} ReLU units", c.hidden)
    };
    let mut out = String::new();
    let _ = writeln!(out, "# {name}\n");
    let _ = writeln!(
        out,
        "A prompt-injection guard trained by `ragd train guard`: {head} over the frozen features of {}, \
         classes {}. Texts are scored in windows of {} bytes; the worst window decides.\n",
        encoders.join(" + "),
        s.labels
            .iter()
            .map(|l| format!("`{l}`"))
            .collect::<Vec<_>>()
            .join(", "),
        c.window_bytes
    );
    let _ = writeln!(
        out,
        "## Use\n\n```sh\nragd serve --guard {name} --guard-threshold fpr:{}\n```\n",
        args.target_fpr
    );
    let _ = writeln!(out, "## Data\n");
    let _ = writeln!(
        out,
        "`{}`: {} texts for training ({} windows), {} held out for early stopping and calibration \
         (a {:.0}% share chosen by a hash of each row's `group`, so near-duplicates stay on one side).\n",
        args.data.display(),
        s.train_texts,
        train_windows,
        s.val_texts,
        args.val_fraction * 100.0
    );
    let _ = writeln!(
        out,
        "| source | label | training | held out |\n|---|---|---:|---:|"
    );
    let (t, v) = (counts(train), counts(val));
    let keys: std::collections::BTreeSet<_> = t.keys().chain(v.keys()).collect();
    for k in keys {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            k.0,
            k.1,
            t.get(k).unwrap_or(&0),
            v.get(k).unwrap_or(&0)
        );
    }
    let _ = writeln!(out, "\n## Training\n");
    let _ = writeln!(
        out,
        "AdamW (lr {}, weight decay {}), batches of {}, class-weighted cross-entropy, seed {}; after the first \
         epoch an attack text trains on its most attack-like window (a text is scored by its worst window); early \
         stopping after {} epochs without a better validation loss: best epoch {} of {} run. Features {:.0} s, \
         head {:.0} s.\n",
        args.lr,
        args.weight_decay,
        args.batch_size,
        args.seed,
        args.patience,
        s.best_epoch,
        s.epochs_run,
        s.feature_seconds,
        s.train_seconds
    );
    let _ = writeln!(out, "## Calibration and thresholds\n");
    if let Some(cal) = &c.calibration {
        let _ = writeln!(
            out,
            "Threshold for the target false-positive rate {}: **{:.4}** (from the scores of the {} held-out \
             benign texts; `--guard-threshold fpr:RATE` picks one for any rate the same way).\n",
            cal.target_fpr,
            cal.threshold,
            cal.benign_scores.len()
        );
        let _ = writeln!(out, "| target FPR | threshold |\n|---:|---:|");
        for rate in [0.005, 0.01, 0.02, 0.05, 0.1] {
            let _ = writeln!(out, "| {rate} | {:.4} |", cal.threshold_for_fpr(rate));
        }
    }
    let _ = writeln!(
        out,
        "\n## Held-out validation\n\n{}\n{}\n",
        s.validation.table(),
        s.validation.legend()
    );
    if let (Some(eval), Some(path)) = (&s.eval, &args.eval) {
        let _ = writeln!(
            out,
            "## Evaluation\n\n`{}` (never used for training or for choosing anything):\n\n{}\n{}\n",
            path.display(),
            eval.table(),
            eval.legend()
        );
    }
    out
}
