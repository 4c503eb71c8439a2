//! `ragd train guard`: a prompt-injection guard trained on a labelled JSONL
//! (`{"text", "label"}`, label `benign` or an attack class such as
//! `injection` / `jailbreak`), as a small head on frozen encoder features.
//!
//! 1. A share of the file (by `group`, else by text: near-duplicates stay
//!    together) is held out for validation; the rest trains.
//! 2. Each text is cut into the byte windows the guard scores at serving
//!    time; every window is encoded by the chosen encoders (cached on disk
//!    by text) and their features concatenated.
//! 3. The head (ragd-models' `train_head`: class-weighted, AdamW, early
//!    stopping on the validation loss) is trained.
//! 4. The validation texts' scores calibrate the thresholds: the benign
//!    ones give the threshold for any false-positive rate
//!    (`--guard-threshold fpr:0.01`).
//! 5. The folder gets `config.json`, `head.safetensors` and a model card.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use ragd_models::guard::trained::{
    text_windows, train_head, weights_sha256, Calibration, EncoderKind, EncoderRef, FeatureEncoder, Head,
    TrainOptions, TrainSet, Trained, TrainedGuardConfig, HEAD_FILE, MODEL_TYPE,
};
use ragd_models::resolve_model_dir;
use sha2::{Digest, Sha256};

use super::feature_cache::FeatureCache;
pub use super::guard_args::{Features, TrainGuardArgs, TrainSummary};
use crate::eval::guard::{read_rows, GuardRow};
use crate::eval::guard_metrics::{Report, Scored};

/// A fixed number in [0, 1) for `key`.
fn unit(key: &str) -> f64 {
    let d = Sha256::digest(key.as_bytes());
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) as f64 / 2f64.powi(64)
}

fn normalized(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether `row` is in the held-out validation share.
pub fn holds_out(row: &GuardRow, fraction: f64) -> bool {
    let key = row.group.clone().unwrap_or_else(|| normalized(&row.text));
    unit(&format!("validation:{key}")) < fraction
}

/// An encoder with its folder, its weights' hash and its cache.
struct Encoder {
    model: FeatureEncoder,
    reference: EncoderRef,
    dir: PathBuf,
    cache: FeatureCache,
}

fn cache_dir(args: &TrainGuardArgs) -> PathBuf {
    args.cache.clone().unwrap_or_else(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".cache/ragd/guard-features")
    })
}

fn load_encoders(args: &TrainGuardArgs) -> anyhow::Result<Vec<Encoder>> {
    let device = args.device.open()?;
    let mut out = Vec::new();
    for kind in args.features.kinds() {
        let name = match kind {
            EncoderKind::Embedder => Some(&args.embedder),
            EncoderKind::NanoGuard => Some(&args.nanoguard),
            EncoderKind::CharNgrams => None,
        };
        let dir = match name {
            Some(name) => resolve_model_dir(name, &args.dir.models_dir)?
                .with_context(|| format!("{kind:?} encoder: none"))?,
            None => PathBuf::new(),
        };
        let sha = weights_sha256(kind, &dir)?;
        let model = FeatureEncoder::load(kind, &dir, &device)?;
        let dim = model.dim();
        // N-grams cost microseconds: a file of them would cost gigabytes.
        let cache = if args.no_cache || !kind.has_folder() {
            FeatureCache::in_memory(dim)
        } else {
            let file = format!("{}-{}.f32", format!("{kind:?}").to_lowercase(), &sha[..16]);
            FeatureCache::open(&cache_dir(args).join(file), dim)?
        };
        out.push(Encoder {
            reference: EncoderRef {
                kind,
                path: String::new(),
                weights_sha256: sha,
                dim,
            },
            model,
            dir,
            cache,
        });
    }
    Ok(out)
}

/// Windows encoded per call: a progress step, and what is lost if stopped.
const WINDOWS_PER_CALL: usize = 64;

/// Makes sure every window in `windows` has features in every cache.
fn compute_features(encoders: &mut [Encoder], windows: &[&str]) -> anyhow::Result<()> {
    for e in encoders {
        let mut missing: Vec<&str> = windows
            .iter()
            .copied()
            .filter(|w| e.cache.get(w).is_none())
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            continue;
        }
        let bar = ragd_client::progress(missing.len() as u64, &format!("{:?} features", e.reference.kind));
        for chunk in missing.chunks(WINDOWS_PER_CALL) {
            let features = e.model.encode(chunk)?;
            e.cache.insert(chunk, features)?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
    }
    Ok(())
}

/// The concatenated features of one window (computed before).
fn window_features(encoders: &[Encoder], window: &str) -> Vec<f32> {
    encoders
        .iter()
        .flat_map(|e| e.cache.get(window).unwrap_or_default().iter().copied())
        .collect()
}

/// The texts of a training set, each with its windows' features.
fn train_set(encoders: &[Encoder], texts: &[(Vec<String>, u32)], dim: usize) -> TrainSet {
    let mut set = TrainSet::new(dim);
    for (windows, class) in texts {
        let features: Vec<Vec<f32>> = windows.iter().map(|w| window_features(encoders, w)).collect();
        let refs: Vec<&[f32]> = features.iter().map(Vec::as_slice).collect();
        set.push(&refs, *class);
    }
    set
}

/// Each text's score: the worst window's probability of not being benign.
fn score_texts(encoders: &[Encoder], head: &Head, texts: &[Vec<String>]) -> anyhow::Result<Vec<f32>> {
    let rows: Vec<Vec<f32>> = texts
        .iter()
        .flatten()
        .map(|w| window_features(encoders, w))
        .collect();
    let mut probs = head.probs(&rows)?.into_iter();
    Ok(texts
        .iter()
        .map(|t| {
            probs
                .by_ref()
                .take(t.len())
                .map(|p| 1.0 - p[0])
                .fold(0f32, f32::max)
        })
        .collect())
}

fn scored(rows: &[&GuardRow], scores: &[f32], default_source: &str) -> Vec<Scored> {
    rows.iter()
        .zip(scores)
        .map(|(r, &score)| Scored {
            source: r.source.clone().unwrap_or_else(|| default_source.to_string()),
            attack: r.is_attack(),
            score,
        })
        .collect()
}

/// `enc_dir` as the guard folder `out` should name it: `../name` when
/// both are in one folder (the models folder), else absolute.
fn encoder_path(out: &Path, enc_dir: &Path) -> anyhow::Result<String> {
    let out = out.canonicalize()?;
    let enc = enc_dir.canonicalize()?;
    Ok(match (out.parent(), enc.parent(), enc.file_name()) {
        (Some(a), Some(b), Some(name)) if a == b => format!("../{}", name.to_string_lossy()),
        _ => enc.display().to_string(),
    })
}

/// Trains a guard into `args.out`.
pub fn train(args: &TrainGuardArgs) -> anyhow::Result<TrainSummary> {
    let rows = read_rows(&args.data)?;
    let mut labels = vec!["benign".to_string()];
    let mut attacks: Vec<String> = rows
        .iter()
        .filter(|r| r.is_attack())
        .map(|r| r.label.clone())
        .collect();
    attacks.sort();
    attacks.dedup();
    anyhow::ensure!(
        !attacks.is_empty() && rows.iter().any(|r| !r.is_attack()),
        "{} needs both benign rows and attack rows",
        args.data.display()
    );
    labels.extend(attacks);
    let class = |r: &GuardRow| labels.iter().position(|l| *l == r.label).unwrap_or(0) as u32;
    let (val_rows, train_rows): (Vec<&GuardRow>, Vec<&GuardRow>) =
        rows.iter().partition(|r| holds_out(r, args.val_fraction));
    let eval_rows = match &args.eval {
        Some(path) => read_rows(path)?,
        None => Vec::new(),
    };
    let eval_refs: Vec<&GuardRow> = eval_rows.iter().collect();
    let windows = |rs: &[&GuardRow]| -> Vec<Vec<String>> {
        rs.iter()
            .map(|r| text_windows(&r.text, args.window_bytes()))
            .collect()
    };
    let (train_w, val_w, eval_w) = (windows(&train_rows), windows(&val_rows), windows(&eval_refs));

    let t0 = Instant::now();
    let mut encoders = load_encoders(args)?;
    let all: Vec<&str> = train_w
        .iter()
        .chain(&val_w)
        .chain(&eval_w)
        .flatten()
        .map(String::as_str)
        .collect();
    compute_features(&mut encoders, &all)?;
    let feature_seconds = t0.elapsed().as_secs_f64();

    let dim = encoders.iter().map(|e| e.reference.dim).sum();
    let with_class = |w: &[Vec<String>], rs: &[&GuardRow]| -> Vec<(Vec<String>, u32)> {
        w.iter().cloned().zip(rs.iter().map(|r| class(r))).collect()
    };
    let train_data = train_set(&encoders, &with_class(&train_w, &train_rows), dim);
    let val_data = train_set(&encoders, &with_class(&val_w, &val_rows), dim);
    let opts = TrainOptions {
        hidden: args.hidden,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        weight_decay: args.weight_decay,
        patience: args.patience,
        class_weighting: true,
        standardise: !args.features.kinds().contains(&EncoderKind::CharNgrams),
        seed: args.seed,
    };
    let t1 = Instant::now();
    let bar = ragd_client::progress(args.epochs as u64, "training");
    let Trained {
        head,
        best_epoch,
        epochs,
        ..
    } = train_head(&train_data, &val_data, labels.len(), &opts, &mut |e| {
        bar.set_message(format!(
            "training (val loss {:.4}, train loss {:.4})",
            e.val_loss, e.train_loss
        ));
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    let train_seconds = t1.elapsed().as_secs_f64();

    let val_scores = score_texts(&encoders, &head, &val_w)?;
    let benign: Vec<f32> = val_rows
        .iter()
        .zip(&val_scores)
        .filter(|(r, _)| !r.is_attack())
        .map(|(_, &s)| s)
        .collect();
    let calibration = Calibration::new("validation", benign, args.target_fpr);
    let validation = Report::new(
        &scored(&val_rows, &val_scores, "validation"),
        calibration.threshold,
    );
    let eval = if eval_rows.is_empty() {
        None
    } else {
        let scores = score_texts(&encoders, &head, &eval_w)?;
        Some(Report::new(
            &scored(&eval_refs, &scores, "eval"),
            calibration.threshold,
        ))
    };

    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    for e in encoders.iter_mut().filter(|e| e.reference.kind.has_folder()) {
        e.reference.path = encoder_path(&args.out, &e.dir)?;
    }
    let config = TrainedGuardConfig {
        model_type: MODEL_TYPE.to_string(),
        labels: labels.clone(),
        window_bytes: args.window_bytes(),
        encoders: encoders.iter().map(|e| e.reference.clone()).collect(),
        hidden: args.hidden,
        calibration: Some(calibration),
    };
    head.save(&args.out.join(HEAD_FILE))?;
    let config_path = args.out.join("config.json");
    std::fs::write(&config_path, serde_json::to_string_pretty(&config)? + "\n")
        .with_context(|| format!("writing {}", config_path.display()))?;
    let summary = TrainSummary {
        labels,
        config,
        best_epoch,
        epochs_run: epochs.len(),
        train_texts: train_rows.len(),
        val_texts: val_rows.len(),
        validation,
        eval,
        feature_seconds,
        train_seconds,
    };
    let card = super::model_card::model_card(args, &summary, &train_rows, &val_rows, train_data.len());
    std::fs::write(args.out.join("README.md"), card)?;
    Ok(summary)
}

pub fn run(args: TrainGuardArgs) -> anyhow::Result<()> {
    let s = train(&args)?;
    let threshold = s.validation.threshold;
    println!(
        "trained guard -> {} ({} texts trained, {} held out; best epoch {} of {}; features {:.0} s, head {:.0} s)",
        args.out.display(),
        s.train_texts,
        s.val_texts,
        s.best_epoch,
        s.epochs_run,
        s.feature_seconds,
        s.train_seconds
    );
    println!(
        "validation: ROC-AUC {:.4}, TPR {:.3} at FPR {:.3} (threshold {threshold:.4} for a target FPR of {})",
        s.validation.overall.roc_auc.unwrap_or(f64::NAN),
        s.validation.overall.tpr.unwrap_or(f64::NAN),
        s.validation.overall.fpr.unwrap_or(f64::NAN),
        args.target_fpr
    );
    if let Some(eval) = &s.eval {
        println!(
            "\nevaluation file {}:\n\n{}\n{}",
            args.eval.as_deref().unwrap_or(Path::new("")).display(),
            eval.table(),
            eval.legend()
        );
    }
    println!(
        "\nserve it with: ragd serve --guard {} --guard-threshold fpr:{}",
        args.out.display(),
        args.target_fpr
    );
    Ok(())
}
