//! BERT sentence embedder (all-MiniLM-L6-v2 and other sentence-transformers
//! BERT checkpoints): candle-transformers' `BertModel`, then mean pooling and
//! L2 normalisation.
//!
//! A batch is sorted by length and cut into sub-batches of similar length,
//! so short queries are not padded to the longest passage of the batch.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use ragd_core::{Embedder, Framing, ModelError, ModelInfo, ModelKind, Overflow, Result, TokenBatch};

use super::pooling::mean_pool_normalize;
use crate::error::inference;
use crate::hf_tokenizer::HfTokenizer;

/// Most sequences run in one forward pass.
const SUB_BATCH_SEQS: usize = 32;

pub struct BertEmbedder {
    model: BertModel,
    info: ModelInfo,
    dim: usize,
    pad_id: u32,
    device: Device,
}

/// `max_seq_length` of sentence-transformers' `sentence_bert_config.json`.
#[derive(serde::Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::load(path.display(), e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::load(path.display(), e))
}

impl BertEmbedder {
    /// Loads `config.json`, `model.safetensors` and `tokenizer.json` from
    /// `dir`. The window is `sentence_bert_config.json`'s `max_seq_length`
    /// when present, else the model's position limit.
    pub fn load(dir: &Path, id: &str, device: &Device) -> Result<(Self, Arc<HfTokenizer>)> {
        let config: Config = read_json(&dir.join("config.json"))?;
        let max_len = match dir.join("sentence_bert_config.json") {
            p if p.is_file() => read_json::<SentenceBertConfig>(&p)?.max_seq_length,
            _ => config.max_position_embeddings,
        }
        .min(config.max_position_embeddings);
        let weights = dir.join("model.safetensors");
        let tensors = candle_core::safetensors::load(&weights, device)
            .map_err(|e| ModelError::load(weights.display(), e))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let model = BertModel::load(vb, &config).map_err(|e| ModelError::load(weights.display(), e))?;
        let tokenizer = HfTokenizer::from_file(&dir.join("tokenizer.json"))?;
        let special = |t: &str| {
            tokenizer
                .token_id(t)
                .ok_or_else(|| ModelError::load(dir.display(), format!("tokenizer has no {t} token")))
        };
        let framing = Framing {
            prefix: vec![special("[CLS]")?],
            suffix: vec![special("[SEP]")?],
            max_len,
            overflow: Overflow::Truncate,
        };
        let embedder = Self {
            model,
            info: ModelInfo {
                id: id.to_string(),
                kind: ModelKind::Embedder,
                framing,
            },
            dim: config.hidden_size,
            pad_id: config.pad_token_id as u32,
            device: device.clone(),
        };
        Ok((embedder, Arc::new(tokenizer)))
    }

    /// One forward over sequences of similar length, padded to the longest.
    fn forward_padded(&self, seqs: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let width = seqs.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(seqs.len() * width);
        let mut mask = Vec::with_capacity(seqs.len() * width);
        for s in seqs {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(self.pad_id, width - s.len()));
            mask.extend(std::iter::repeat_n(1u32, s.len()));
            mask.extend(std::iter::repeat_n(0u32, width - s.len()));
        }
        let shape = (seqs.len(), width);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let type_ids = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?;
        mean_pool_normalize(&hidden, &mask)?.to_vec2()
    }
}

impl Embedder for BertEmbedder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&mut self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        let max = self.info.framing.max_len;
        if let Some(s) = batch.seqs().find(|s| s.len() > max) {
            return Err(ModelError::InvalidInput(format!(
                "sequence of {} tokens exceeds the window of {max}",
                s.len()
            )));
        }
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| batch.seq(i).len());
        let mut out = vec![Vec::new(); batch.len()];
        for chunk in order.chunks(SUB_BATCH_SEQS) {
            let seqs: Vec<&[u32]> = chunk.iter().map(|&i| batch.seq(i)).collect();
            let _span = tracing::trace_span!("bert_forward", seqs = seqs.len()).entered();
            let vecs = self.forward_padded(&seqs).map_err(inference)?;
            for (&i, v) in chunk.iter().zip(vecs) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}
