//! Cross-encoder rerankers: a (query, document) pair in, one relevance
//! logit out.
//!
//! [`CrossEncoder`] runs Hugging Face `BertForSequenceClassification`
//! checkpoints with one label (`cross-encoder/ms-marco-MiniLM-L-6-v2` and
//! the other sentence-transformers cross-encoders): the BERT encoder of
//! the embedder ([`PackedBert`]), the pooler (dense + tanh on `[CLS]`) and
//! the classifier. `XLMRobertaForSequenceClassification` /
//! `RobertaForSequenceClassification` with one label (`BAAI/bge-reranker-base`,
//! `-large`) run on the same encoder: their head is `classifier.dense` +
//! tanh on `<s>`, then `classifier.out_proj`.
//!
//! The pair is one sequence, `[CLS] query [SEP] document [SEP]` with token
//! types 0 up to the first `[SEP]` and 1 after (RoBERTa: `<s> q </s></s> d
//! </s>`, types all 0), framed by [`PairFraming`] from the pair template of
//! `tokenizer.json`. Like the embedder, a batch runs packed (no padding),
//! sorted by length, on every device.

mod pair;

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use candle_transformers::models::bert::Config;
use ragd_core::{ModelError, ModelInfo, ModelKind, Result, TokenBatch};

pub use pair::PairFraming;

use crate::embed::bert::{by_length, packed_sub_batch_end, read_json};
use crate::embed::bert_packed::{is_roberta, PackedBert};
use crate::guard::special_tokens::{pair_specials, PairSpecials};
use crate::hf_tokenizer::HfTokenizer;

/// A loaded cross-encoder.
pub struct CrossEncoder {
    encoder: PackedBert,
    /// The pooler (BERT) or the head's first layer (RoBERTa), then tanh.
    dense: Linear,
    /// The one-logit output layer.
    out: Linear,
    info: ModelInfo,
    pairs: PairFraming,
    /// Token types: `Some((sep, t))`: tokens after the first `sep` are of
    /// type `t`; `None`: all of type 0.
    types: Option<(u32, u32)>,
}

impl CrossEncoder {
    /// Loads `config.json`, `model.safetensors` and `tokenizer.json` from
    /// `dir`. Fails on a checkpoint with more than one label.
    pub fn load(dir: &Path, id: &str, device: &Device) -> Result<(Self, Arc<HfTokenizer>)> {
        let config: Config = read_json(&dir.join("config.json"))?;
        let weights = dir.join("model.safetensors");
        let load_err = |e: candle_core::Error| ModelError::load(weights.display(), e);
        let tensors = candle_core::safetensors::load(&weights, device).map_err(load_err)?;
        let roberta_head = tensors.contains_key("classifier.out_proj.weight");
        let out_name = if roberta_head {
            "classifier.out_proj.weight"
        } else {
            "classifier.weight"
        };
        match tensors.get(out_name).map(Tensor::dims) {
            Some([1, _]) => {}
            Some(dims) => {
                return Err(ModelError::load(
                    weights.display(),
                    format!("{out_name} has shape {dims:?}: a reranker has one label (num_labels = 1)"),
                ))
            }
            None => return Err(ModelError::load(
                weights.display(),
                "no classifier: not a BertForSequenceClassification or XLMRobertaForSequenceClassification",
            )),
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let h = config.hidden_size;
        let (dense, out) = if roberta_head {
            (vb.pp("classifier.dense"), vb.pp("classifier.out_proj"))
        } else if vb.contains_tensor("bert.pooler.dense.weight") {
            (vb.pp("bert.pooler.dense"), vb.pp("classifier"))
        } else {
            (vb.pp("pooler.dense"), vb.pp("classifier"))
        };
        let dense = candle_nn::linear(h, h, dense).map_err(load_err)?;
        let out = candle_nn::linear(h, 1, out).map_err(load_err)?;
        let encoder = PackedBert::load(vb, &config).map_err(load_err)?;
        let max_len = encoder.max_len().map_err(load_err)?;
        crate::device::log_model_loaded(id, device, DType::F32, "candle-packed-bert");

        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = HfTokenizer::from_file(&tokenizer_path)?;
        let specials = pair_layout(&tokenizer_path, &tokenizer, is_roberta(&config))?;
        let types = match (config.type_vocab_size, specials.middle.last()) {
            (2.., Some(&sep)) if specials.second_type > 0 => Some((sep, specials.second_type)),
            _ => None,
        };
        let pairs = PairFraming {
            prefix: specials.prefix,
            middle: specials.middle,
            suffix: specials.suffix,
            max_len,
        };
        let model = Self {
            encoder,
            dense,
            out,
            info: ModelInfo {
                id: id.to_string(),
                kind: ModelKind::Reranker,
                framing: pairs.single(),
            },
            pairs,
            types,
        };
        Ok((model, Arc::new(tokenizer)))
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// How (query, document) pairs become the sequences [`Self::score`] takes.
    pub fn pairs(&self) -> &PairFraming {
        &self.pairs
    }

    /// The relevance logit of each framed pair (see [`PairFraming::frame`]),
    /// in order. Every sequence is at most `pairs().max_len` long.
    pub fn score(&mut self, batch: &TokenBatch) -> Result<Vec<f32>> {
        crate::padding::check_window(batch, self.pairs.max_len)?;
        let end = |order: &[usize], start| packed_sub_batch_end(batch, order, start);
        by_length(batch, end, |seqs| {
            let types = self.types.map(|(sep, t)| token_types(seqs, sep, t));
            let first = self.encoder.first_tokens(seqs, types)?;
            let pooled = self.dense.forward(&first)?.tanh()?;
            self.out.forward(&pooled)?.squeeze(1)?.to_vec1::<f32>()
        })
    }
}

/// Token types of packed sequences: 0 up to and including the first
/// `sep`, `second` after it.
fn token_types(seqs: &[&[u32]], sep: u32, second: u32) -> Vec<u32> {
    let mut types = Vec::with_capacity(seqs.iter().map(|s| s.len()).sum());
    for seq in seqs {
        let split = seq.iter().position(|&t| t == sep).map_or(seq.len(), |i| i + 1);
        types.extend((0..seq.len()).map(|i| if i < split { 0 } else { second }));
    }
    types
}

/// The pair template of `tokenizer.json`; without one, BERT's `[CLS] A
/// [SEP] B [SEP]` or RoBERTa's `<s> A </s></s> B </s>` from the vocabulary.
fn pair_layout(path: &Path, tokenizer: &HfTokenizer, roberta: bool) -> Result<PairSpecials> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::load(path.display(), e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ModelError::load(path.display(), e))?;
    if let Some(p) = pair_specials(&json) {
        return Ok(p);
    }
    let id = |t: &str| {
        tokenizer
            .token_id(t)
            .ok_or_else(|| ModelError::load(path.display(), format!("no pair template and no {t} token")))
    };
    Ok(if roberta {
        let (cls, sep) = (id("<s>")?, id("</s>")?);
        PairSpecials {
            prefix: vec![cls],
            middle: vec![sep, sep],
            suffix: vec![sep],
            second_type: 0,
        }
    } else {
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        PairSpecials {
            prefix: vec![cls],
            middle: vec![sep],
            suffix: vec![sep],
            second_type: 1,
        }
    })
}

/// The relevance score of a logit: its sigmoid, in (0, 1), what Text
/// Embeddings Inference's `/rerank` returns unless `raw_scores` is set.
pub fn sigmoid(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_switch_after_the_first_separator() {
        let seqs: [&[u32]; 2] = [&[101, 5, 102, 7, 8, 102], &[101, 102, 102]];
        assert_eq!(token_types(&seqs, 102, 1), vec![0, 0, 0, 1, 1, 1, 0, 0, 1]);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
    }
}
