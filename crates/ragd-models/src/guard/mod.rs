//! Injection/jailbreak classifiers behind [`ragd_core::Classifier`]:
//! NanoGuard (a port of the PyTorch original), DeBERTa-v2 sequence
//! classifiers such as Prompt-Guard-86M, and heads trained by `ragd train
//! guard` on frozen encoders ([`trained`]). [`load_guard`] picks one from
//! the files in a model folder.

pub mod deberta;
pub mod nanoguard;
mod nanoguard_checkpoint;
mod nanoguard_model;
pub(crate) mod special_tokens;
pub mod tiktoken;
#[doc(hidden)] // For the fuzz target `tiktoken_pickle` (fuzz/).
pub mod tiktoken_pickle;
pub mod trained;

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use ragd_core::{Classifier, ModelError, Result, TextTokenizer};

pub use deberta::DebertaGuard;
pub use nanoguard::NanoGuard;
pub use nanoguard_checkpoint::NanoGuardConfig;
pub use tiktoken::TiktokenTokenizer;
pub use trained::{GuardThreshold, TrainedGuard};

/// The guard formats [`load_guard`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardFormat {
    /// `model.pt` + `tokenizer.pkl`.
    NanoGuard,
    /// `config.json` with `model_type` `deberta-v2`, `model.safetensors`, `tokenizer.json`.
    DebertaV2,
    /// `config.json` with `model_type` `ragd-trained-guard`, `head.safetensors`.
    Trained,
}

/// Which format the files in `dir` are, if any.
pub fn detect_guard_format(dir: &Path) -> Result<GuardFormat> {
    if dir.join("model.pt").is_file() && dir.join("tokenizer.pkl").is_file() {
        return Ok(GuardFormat::NanoGuard);
    }
    let config = dir.join("config.json");
    if config.is_file() {
        let text = std::fs::read_to_string(&config).map_err(|e| ModelError::load(config.display(), e))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::load(config.display(), e))?;
        return match json.get("model_type").and_then(|v| v.as_str()) {
            Some("deberta-v2") => Ok(GuardFormat::DebertaV2),
            Some(trained::MODEL_TYPE) => Ok(GuardFormat::Trained),
            other => Err(ModelError::load(
                config.display(),
                format!(
                    "model_type {other:?} is not a supported guard (deberta-v2, {})",
                    trained::MODEL_TYPE
                ),
            )),
        };
    }
    Err(ModelError::load(
        dir.display(),
        "no guard model here: expected model.pt + tokenizer.pkl (NanoGuard) or config.json (DeBERTa-v2, or a guard trained by `ragd train guard`)",
    ))
}

/// Loads the guard in `dir`, named after the folder, with its tokenizer.
pub fn load_guard(dir: &Path, device: &Device) -> Result<(Box<dyn Classifier>, Arc<dyn TextTokenizer>)> {
    let id = crate::model_id(dir)?;
    match detect_guard_format(dir)? {
        GuardFormat::NanoGuard => {
            let (guard, tokenizer) = NanoGuard::load(dir, &id, device)?;
            Ok((Box::new(guard), tokenizer))
        }
        GuardFormat::DebertaV2 => {
            let (guard, tokenizer) = DebertaGuard::load_with_tokenizer(dir, &id, device)?;
            Ok((Box::new(guard), tokenizer))
        }
        GuardFormat::Trained => {
            let (guard, tokenizer) = TrainedGuard::load(dir, &id, device)?;
            Ok((Box::new(guard), tokenizer))
        }
    }
}
