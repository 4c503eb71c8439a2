//! DeBERTa-v2/v3 sequence classifiers (Meta's Prompt-Guard-86M and its
//! kind) behind [`Classifier`], with candle-transformers'
//! `DebertaV2SeqClassificationModel`.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::debertav2::{Config, DebertaV2SeqClassificationModel};
use ragd_core::{Classifier, Framing, ModelError, ModelInfo, ModelKind, Overflow, Result, TokenBatch};

use super::special_tokens::single_sequence_specials;
use crate::error::inference;
use crate::hf_tokenizer::HfTokenizer;

/// Sequences per forward pass; a batch is sorted by length first.
const SUB_BATCH_SEQS: usize = 32;
/// `[CLS]` and `[SEP]` of the DeBERTa-v3 sentencepiece vocabularies, used
/// when neither `tokenizer.json` nor `config.json` names them.
const DEFAULT_CLS: u32 = 1;
const DEFAULT_SEP: u32 = 2;

pub struct DebertaGuard {
    model: DebertaV2SeqClassificationModel,
    info: ModelInfo,
    labels: Vec<String>,
    vocab_size: usize,
    pad_id: u32,
    device: Device,
}

/// The fields of `config.json` candle's `Config` leaves out.
#[derive(serde::Deserialize)]
struct ExtraConfig {
    model_type: Option<String>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<u32>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::load(path.display(), e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::load(path.display(), e))
}

impl DebertaGuard {
    /// Loads `config.json`, `model.safetensors` and `tokenizer.json` from `dir`.
    pub fn load_with_tokenizer(dir: &Path, id: &str, device: &Device) -> Result<(Self, Arc<HfTokenizer>)> {
        let tokenizer = HfTokenizer::from_file(&dir.join("tokenizer.json"))?;
        let guard = Self::load(dir, id, device)?;
        Ok((guard, Arc::new(tokenizer)))
    }

    /// Loads the model alone. The special tokens come from `tokenizer.json`'s
    /// post-processor if there is one, else from `config.json`'s
    /// `bos_token_id`/`eos_token_id`, else DeBERTa-v3's `[CLS]` 1 and `[SEP]` 2.
    pub fn load(dir: &Path, id: &str, device: &Device) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config: Config = read_json(&config_path)?;
        let extra: ExtraConfig = read_json(&config_path)?;
        let bad_config = |reason: String| ModelError::load(config_path.display(), reason);
        match extra.model_type.as_deref() {
            Some("deberta-v2") | None => {}
            Some(other) => return Err(bad_config(format!("model_type {other:?} is not deberta-v2"))),
        }
        // candle leaves these unimplemented (`todo!`): refuse them here.
        if config.conv_kernel_size.unwrap_or(0) > 0 {
            return Err(bad_config("DeBERTa convolution layers are not supported".into()));
        }
        let labels = labels_in_order(&config).map_err(bad_config)?;
        let (prefix, suffix) = special_ids(dir, &extra)?;
        let weights = dir.join("model.safetensors");
        let tensors = candle_core::safetensors::load(&weights, device)
            .map_err(|e| ModelError::load(weights.display(), e))?;
        let prefixed = tensors.contains_key("deberta.embeddings.word_embeddings.weight");
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let vb = if prefixed { vb.pp("deberta") } else { vb };
        let model = DebertaV2SeqClassificationModel::load(vb, &config, None)
            .map_err(|e| ModelError::load(weights.display(), e))?;
        crate::device::log_model_loaded(id, device, DType::F32, "candle-deberta-v2");
        let framing = Framing {
            prefix,
            suffix,
            max_len: config.max_position_embeddings,
            overflow: Overflow::Windows,
        };
        Ok(Self {
            model,
            info: ModelInfo {
                id: id.to_string(),
                kind: ModelKind::Guard,
                framing,
            },
            labels,
            vocab_size: config.vocab_size,
            pad_id: config.pad_token_id.unwrap_or(0) as u32,
            device: device.clone(),
        })
    }

    /// Raw logits per sequence (before the softmax of [`Classifier::classify`]).
    pub fn logits(&self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        crate::padding::check_window(batch, self.info.framing.max_len)?;
        if let Some(&id) = batch.input_ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(ModelError::InvalidInput(format!(
                "token id {id} is not below {}",
                self.vocab_size
            )));
        }
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| batch.seq(i).len());
        let mut out = vec![Vec::new(); batch.len()];
        for chunk in order.chunks(SUB_BATCH_SEQS) {
            let seqs: Vec<&[u32]> = chunk.iter().map(|&i| batch.seq(i)).collect();
            let _span = tracing::trace_span!("deberta_forward", seqs = seqs.len()).entered();
            let logits = self
                .forward_padded(&seqs)
                .and_then(|t| t.to_vec2())
                .map_err(inference)?;
            for (&i, l) in chunk.iter().zip(logits) {
                out[i] = l;
            }
        }
        Ok(out)
    }

    /// Logits of sequences padded to the longest, with an attention mask.
    fn forward_padded(&self, seqs: &[&[u32]]) -> candle_core::Result<Tensor> {
        let (ids, mask) = crate::padding::pad(seqs, self.pad_id, None, &self.device)?;
        self.model.forward(&ids, None, Some(mask))
    }
}

/// `id2label` as a list, checking the ids are exactly 0..n.
fn labels_in_order(config: &Config) -> Result<Vec<String>, String> {
    let id2label = config.id2label.as_ref().ok_or("config.json has no id2label")?;
    (0..id2label.len() as u32)
        .map(|i| {
            id2label
                .get(&i)
                .cloned()
                .ok_or_else(|| format!("id2label has no id {i}"))
        })
        .collect()
}

fn special_ids(dir: &Path, extra: &ExtraConfig) -> Result<(Vec<u32>, Vec<u32>)> {
    let path = dir.join("tokenizer.json");
    if path.is_file() {
        let json: serde_json::Value = read_json(&path)?;
        if let Some(specials) = single_sequence_specials(&json) {
            return Ok(specials);
        }
    }
    Ok((
        vec![extra.bos_token_id.unwrap_or(DEFAULT_CLS)],
        vec![extra.eos_token_id.unwrap_or(DEFAULT_SEP)],
    ))
}

impl Classifier for DebertaGuard {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn classify(&mut self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        Ok(self.logits(batch)?.iter().map(|l| softmax(l)).collect())
    }
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}
