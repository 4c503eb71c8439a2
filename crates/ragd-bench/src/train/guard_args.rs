//! What `ragd train guard` takes (its flags) and gives back besides the
//! folder (the figures the model card reports).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ragd_models::guard::trained::{EncoderKind, TrainedGuardConfig, DEFAULT_WINDOW_BYTES};
use ragd_models::DeviceChoice;

use crate::embed::ModelsDir;
use crate::eval::guard_metrics::Report;

/// Which frozen features the head reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Features {
    /// The embedder's sentence vector (all-MiniLM-L6-v2: 384 values).
    Embedder,
    /// NanoGuard's pooled features (512 values; ~135 ms a window on 2 cores).
    Nanoguard,
    /// Both, concatenated.
    Both,
    /// Hashed character n-grams (16,384 buckets; no model, microseconds a
    /// window).
    Ngrams,
    /// The embedder's vector and the n-grams, concatenated.
    EmbedderNgrams,
}

impl Features {
    pub(super) fn kinds(self) -> Vec<EncoderKind> {
        match self {
            Self::Embedder => vec![EncoderKind::Embedder],
            Self::Nanoguard => vec![EncoderKind::NanoGuard],
            Self::Both => vec![EncoderKind::Embedder, EncoderKind::NanoGuard],
            Self::Ngrams => vec![EncoderKind::CharNgrams],
            Self::EmbedderNgrams => vec![EncoderKind::Embedder, EncoderKind::CharNgrams],
        }
    }

    /// Bytes per window when `--window-bytes` is not given: what the
    /// neural encoders read (about 256 tokens), or, for n-grams alone, a
    /// longer window (long jailbreaks cut into 1 KiB pieces were missed:
    /// 0.90 TPR at 1% FPR against 0.95 with 4 KiB, scikit-learn check).
    pub fn default_window_bytes(self) -> usize {
        match self {
            Self::Ngrams => 4 * DEFAULT_WINDOW_BYTES,
            _ => DEFAULT_WINDOW_BYTES,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct TrainGuardArgs {
    /// Labelled JSONL: `{"text", "label", "source", "group"}` per line
    /// (`source` and `group` optional).
    #[arg(long)]
    pub data: PathBuf,
    /// Folder to write the guard into (`ragd serve --guard` loads it).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = Features::Embedder)]
    pub features: Features,
    /// The embedder encoder: a name in the models folder or a folder.
    #[arg(long, default_value = "all-minilm-l6-v2")]
    pub embedder: String,
    /// The NanoGuard encoder: a name in the models folder or a folder.
    #[arg(long, default_value = "nanoguard")]
    pub nanoguard: String,
    #[command(flatten)]
    pub dir: ModelsDir,
    /// Fixes the initial weights and the batch order.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// False-positive rate the recorded threshold is chosen for.
    #[arg(long, default_value_t = 0.01)]
    pub target_fpr: f64,
    /// Hidden layer width; 0 for logistic regression.
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    /// Most epochs.
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 1e-2)]
    pub weight_decay: f64,
    /// Stop after this many epochs without a better validation loss.
    #[arg(long, default_value_t = 12)]
    pub patience: usize,
    /// Share of the data file held out for early stopping and calibration.
    #[arg(long, default_value_t = 0.15)]
    pub val_fraction: f64,
    /// Bytes per window the guard scores (default: 4096 for `ngrams`, 1024
    /// otherwise).
    #[arg(long)]
    pub window_bytes: Option<usize>,
    /// A labelled evaluation file, scored for the model card only (never
    /// used for training or for choosing anything).
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// Folder of the feature cache (default: ~/.cache/ragd/guard-features).
    #[arg(long, env = "RAGD_GUARD_FEATURE_CACHE")]
    pub cache: Option<PathBuf>,
    /// Keep features in memory only.
    #[arg(long)]
    pub no_cache: bool,
    /// Device the encoders run on: auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
}

impl TrainGuardArgs {
    pub fn window_bytes(&self) -> usize {
        self.window_bytes
            .unwrap_or_else(|| self.features.default_window_bytes())
    }
}

/// What a training run gives besides the folder.
pub struct TrainSummary {
    pub labels: Vec<String>,
    pub config: TrainedGuardConfig,
    pub best_epoch: usize,
    pub epochs_run: usize,
    /// Texts (not windows) per side.
    pub train_texts: usize,
    pub val_texts: usize,
    /// Figures on the validation texts at the calibrated threshold.
    pub validation: Report,
    pub eval: Option<Report>,
    pub feature_seconds: f64,
    pub train_seconds: f64,
}
