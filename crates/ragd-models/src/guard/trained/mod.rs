//! Guards trained by `ragd train guard`: a small head ([`head`]) on the
//! features of frozen encoders ragd already runs ([`encoder`]: the BERT
//! embedder, NanoGuard, hashed character n-grams ([`ngrams`]), or several
//! concatenated).
//!
//! The folder holds `config.json` (`model_type` `ragd-trained-guard`: the
//! labels, the encoders by path relative to the folder and the SHA-256 of
//! their weights, the head's shape, the calibration), `head.safetensors`
//! and a model card, `README.md`.
//!
//! A trained guard reads text, not one tokenizer's ids: its tokenizer is
//! [`ByteTokenizer`] (one id per UTF-8 byte) and its window is
//! `window_bytes` bytes. Each window goes back to text and through every
//! encoder's own tokenizer; longer texts are scored in windows, the worst
//! one deciding, like every guard. Training cuts texts into the same
//! windows ([`text_windows`]), so it sees what the server scores.

pub mod calibration;
pub mod encoder;
pub mod head;
pub mod ngrams;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use ragd_core::{
    Classifier, Framing, ModelError, ModelInfo, ModelKind, Overflow, Result, TextTokenizer, TokenBatch,
};
use serde::{Deserialize, Serialize};

pub use calibration::{threshold_at_fpr, Calibration, GuardThreshold};
pub use encoder::{weights_sha256, EncoderKind, FeatureEncoder};
pub use head::{train_head, Epoch, Head, TrainOptions, TrainSet, Trained};

/// `config.json`'s `model_type` of a trained guard.
pub const MODEL_TYPE: &str = "ragd-trained-guard";
/// Bytes per window: about the 256 tokens of all-MiniLM-L6-v2 in English.
pub const DEFAULT_WINDOW_BYTES: usize = 1024;
/// The head's file in the folder.
pub const HEAD_FILE: &str = "head.safetensors";

/// One encoder of a trained guard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderRef {
    pub kind: EncoderKind,
    /// The encoder's folder, relative to the guard's folder (or absolute).
    pub path: String,
    /// SHA-256 of its weights file: a head is worthless on other weights.
    pub weights_sha256: String,
    /// Length of its feature vector.
    pub dim: usize,
}

/// `config.json` of a trained guard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainedGuardConfig {
    pub model_type: String,
    /// Class names, the benign one first.
    pub labels: Vec<String>,
    pub window_bytes: usize,
    /// Their features are concatenated in this order.
    pub encoders: Vec<EncoderRef>,
    /// Width of the hidden layer; 0 for logistic regression.
    pub hidden: usize,
    #[serde(default)]
    pub calibration: Option<Calibration>,
}

impl TrainedGuardConfig {
    pub fn input_dim(&self) -> usize {
        self.encoders.iter().map(|e| e.dim).sum()
    }

    /// Where encoder `e` is: its path read relative to the guard's folder.
    pub fn encoder_dir(guard_dir: &Path, e: &EncoderRef) -> PathBuf {
        guard_dir.join(&e.path)
    }
}

/// The trained guard's config in `dir`, `None` if `dir` holds another kind
/// of guard.
pub fn read_config(dir: &Path) -> Result<Option<TrainedGuardConfig>> {
    let path = dir.join("config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::load(path.display(), e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ModelError::load(path.display(), e))?;
    if json.get("model_type").and_then(|v| v.as_str()) != Some(MODEL_TYPE) {
        return Ok(None);
    }
    serde_json::from_value(json)
        .map(Some)
        .map_err(|e| ModelError::load(path.display(), e))
}

/// The framing of a trained guard: bare byte windows.
pub fn framing(window_bytes: usize) -> Framing {
    Framing {
        prefix: Vec::new(),
        suffix: Vec::new(),
        max_len: window_bytes.max(4),
        overflow: Overflow::Windows,
    }
}

/// The windows of `text` a trained guard scores, as text (a character cut
/// at a window's edge becomes U+FFFD on both sides, as in the server).
pub fn text_windows(text: &str, window_bytes: usize) -> Vec<String> {
    let ids = ByteTokenizer.encode(text).unwrap_or_default();
    framing(window_bytes)
        .frame(&ids)
        .iter()
        .map(|w| window_text(w))
        .collect()
}

/// A window of byte ids back to text (ids above 255 become U+FFFD).
fn window_text(ids: &[u32]) -> String {
    let bytes: Vec<u8> = ids.iter().map(|&b| u8::try_from(b).unwrap_or(0xFF)).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One token per UTF-8 byte: what lets a trained guard hand each window's
/// text to encoders with different tokenizers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByteTokenizer;

impl TextTokenizer for ByteTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(text.bytes().map(u32::from).collect())
    }

    fn vocab_size(&self) -> usize {
        256
    }

    fn decode_text(&self, ids: &[u32]) -> Result<String> {
        Ok(window_text(ids))
    }

    fn encode_with_offsets(&self, text: &str) -> Result<Vec<ragd_core::tokenizer::TokenSpan>> {
        // Each byte maps to its own position; a multi-byte character's
        // bytes all point at its start (ranges start on char boundaries).
        let mut out = Vec::with_capacity(text.len());
        for (start, ch) in text.char_indices() {
            let end = start + ch.len_utf8();
            out.extend(
                text.as_bytes()[start..end]
                    .iter()
                    .map(|&b| (u32::from(b), (start, end))),
            );
        }
        Ok(out)
    }
}

/// A head trained on frozen encoders, behind [`Classifier`].
pub struct TrainedGuard {
    info: ModelInfo,
    labels: Vec<String>,
    encoders: Vec<FeatureEncoder>,
    head: Head,
}

impl TrainedGuard {
    /// Loads the guard in `dir`: its encoders (checked against the recorded
    /// hashes) and its head.
    pub fn load(dir: &Path, id: &str, device: &Device) -> Result<(Self, Arc<ByteTokenizer>)> {
        let config = read_config(dir)?
            .ok_or_else(|| ModelError::load(dir.display(), format!("config.json is not a {MODEL_TYPE}")))?;
        if config.labels.len() < 2 || config.encoders.is_empty() {
            return Err(ModelError::load(
                dir.display(),
                "config.json needs two labels or more and one encoder or more",
            ));
        }
        let mut encoders = Vec::with_capacity(config.encoders.len());
        for e in &config.encoders {
            let enc_dir = TrainedGuardConfig::encoder_dir(dir, e);
            if e.kind.has_folder() && !enc_dir.is_dir() {
                return Err(ModelError::load(
                    dir.display(),
                    format!(
                        "its {:?} encoder is not at {} (config.json's path is read relative to the guard's folder)",
                        e.kind,
                        enc_dir.display()
                    ),
                ));
            }
            let sha = weights_sha256(e.kind, &enc_dir)?;
            if sha != e.weights_sha256 {
                return Err(ModelError::load(
                    enc_dir.display(),
                    format!(
                        "{} is not the one this guard was trained on (sha256 {sha}, expected {}): retrain the guard",
                        e.kind.weights_file(),
                        e.weights_sha256
                    ),
                ));
            }
            let encoder = FeatureEncoder::load(e.kind, &enc_dir, device)?;
            if encoder.dim() != e.dim {
                return Err(ModelError::load(
                    enc_dir.display(),
                    format!(
                        "its features have {} values, config.json says {}",
                        encoder.dim(),
                        e.dim
                    ),
                ));
            }
            encoders.push(encoder);
        }
        let head = Head::load(
            &dir.join(HEAD_FILE),
            config.input_dim(),
            config.hidden,
            config.labels.len(),
            device,
        )?;
        crate::device::log_model_loaded(id, device, candle_core::DType::F32, "trained-head");
        let guard = Self {
            info: ModelInfo {
                id: id.to_string(),
                kind: ModelKind::Guard,
                framing: framing(config.window_bytes),
            },
            labels: config.labels,
            encoders,
            head,
        };
        Ok((guard, Arc::new(ByteTokenizer)))
    }

    /// Each text's features: every encoder's, concatenated in order.
    pub fn features(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        features(&mut self.encoders, texts)
    }
}

/// Each text's features from `encoders`, concatenated in order.
pub fn features(encoders: &mut [FeatureEncoder], texts: &[&str]) -> Result<Vec<Vec<f32>>> {
    let mut rows = vec![Vec::new(); texts.len()];
    for encoder in encoders {
        for (row, part) in rows.iter_mut().zip(encoder.encode(texts)?) {
            row.extend(part);
        }
    }
    Ok(rows)
}

impl Classifier for TrainedGuard {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn classify(&mut self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        crate::padding::check_window(batch, self.info.framing.max_len)?;
        if let Some(&id) = batch.input_ids.iter().find(|&&id| id > 255) {
            return Err(ModelError::InvalidInput(format!("token id {id} is not a byte")));
        }
        let windows: Vec<String> = batch.seqs().map(window_text).collect();
        let refs: Vec<&str> = windows.iter().map(String::as_str).collect();
        let rows = self.features(&refs)?;
        self.head.probs(&rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_cut_into_byte_windows_as_the_server_frames_them() {
        assert_eq!(text_windows("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(text_windows("", 4), vec![""]);
        // "é" is two bytes: cut in the middle, each side keeps a U+FFFD.
        assert_eq!(text_windows("abcé", 4), vec!["abc\u{FFFD}", "\u{FFFD}"]);
        let ids = ByteTokenizer.encode("hé").unwrap();
        assert_eq!(ids, vec![104, 0xC3, 0xA9]);
        assert_eq!(ByteTokenizer.decode_text(&ids).unwrap(), "hé");
        let spans = ByteTokenizer.encode_with_offsets("hé").unwrap();
        assert_eq!(spans, vec![(104, (0, 1)), (0xC3, (1, 3)), (0xA9, (1, 3))]);
    }

    #[test]
    fn other_configs_are_not_trained_guards() {
        let dir = std::env::temp_dir().join(format!("ragd-trained-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(read_config(&dir).unwrap().is_none());
        std::fs::write(dir.join("config.json"), r#"{"model_type": "deberta-v2"}"#).unwrap();
        assert!(read_config(&dir).unwrap().is_none());
        std::fs::write(
            dir.join("config.json"),
            format!(r#"{{"model_type": "{MODEL_TYPE}"}}"#),
        )
        .unwrap();
        assert!(read_config(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
