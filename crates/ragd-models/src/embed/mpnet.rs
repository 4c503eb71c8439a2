//! MPNet sentence embedder (sentence-transformers' all-mpnet-base-v2):
//! MPNet (Song et al., 2020), then mean pooling and L2 normalisation.
//!
//! The same post-norm layers as BERT ([`Layer`], weights under
//! `attention.attn.{q,k,v,o}`), with three differences that follow
//! transformers' `modeling_mpnet.py`:
//! - no token type embeddings;
//! - absolute positions counted from `pad_token_id + 1`, as RoBERTa;
//! - a relative position bias added to every head's attention scores,
//!   one `[buckets, heads]` table (`encoder.relative_attention_bias`)
//!   shared by all layers, bucketed by [`relative_position_bucket`].
//!
//! Runs packed (padding-free) batches on every device: attention is per
//! sequence, so there is no padding mask to get right.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Module, Result as CandleResult, Tensor};
use candle_nn::{embedding, layer_norm, Embedding, LayerNorm, VarBuilder};
use ragd_core::{Embedder, ModelError, ModelInfo, Result, TokenBatch};
use serde::Deserialize;

use super::bert::{by_length, packed_sub_batch_end, read_json, sentence_embedder_info};
use super::encoder_layer::{load_layers, pack, Layer, LayerDims, LayerNames};
use super::pooling::mean_pool_packed_normalize;
use crate::hf_tokenizer::HfTokenizer;

/// Relative distances beyond this share the last bucket (transformers'
/// `relative_position_bucket` default).
const MAX_DISTANCE: i64 = 128;

const MPNET_LAYER: LayerNames = LayerNames {
    q: "attention.attn.q",
    k: "attention.attn.k",
    v: "attention.attn.v",
    attn_out: "attention.attn.o",
    attn_norm: "attention.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    out_norm: "output.LayerNorm",
};

/// The fields of an MPNet `config.json` that the forward uses.
#[derive(Debug, Clone, Deserialize)]
pub struct MpnetConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_pad")]
    pub pad_token_id: u32,
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_pad() -> u32 {
    1
}
fn default_buckets() -> usize {
    32
}
fn default_act() -> String {
    "gelu".into()
}

/// transformers' `MPNetEncoder.relative_position_bucket` for one relative
/// position (`key - query`): half the buckets for keys before the query,
/// half for keys after; exact up to a quarter of the buckets, then
/// logarithmic up to `max_distance`. Computed in f32 as PyTorch does, so
/// that the bucket edges match.
pub fn relative_position_bucket(relative: i64, num_buckets: usize, max_distance: i64) -> usize {
    let half = (num_buckets / 2) as i64;
    let n = -relative;
    let side = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    let within = if n < max_exact {
        n
    } else {
        let scale = (max_distance as f32 / max_exact as f32).ln();
        let log = (n as f32 / max_exact as f32).ln() / scale * (half - max_exact) as f32;
        (max_exact + log as i64).min(half - 1)
    };
    (side + within) as usize
}

/// The MPNet encoder (embeddings + layers), without pooler.
pub struct PackedMpnet {
    word: Embedding,
    position: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
    /// `[buckets, heads]`.
    relative_bias: Tensor,
    buckets: usize,
    position_offset: u32,
    device: Device,
}

impl PackedMpnet {
    /// Loads from a VarBuilder rooted where `embeddings.*` and `encoder.*`
    /// live (with or without an `mpnet.` prefix).
    pub fn load(vb: VarBuilder, cfg: &MpnetConfig) -> CandleResult<Self> {
        if cfg.hidden_act != "gelu" {
            candle_core::bail!(
                "MPNet with hidden_act {:?}: only gelu is supported",
                cfg.hidden_act
            );
        }
        let vb = if vb.contains_tensor("mpnet.embeddings.word_embeddings.weight") {
            vb.pp("mpnet")
        } else {
            vb
        };
        let h = cfg.hidden_size;
        let emb = vb.pp("embeddings");
        let dims = LayerDims {
            hidden: h,
            heads: cfg.num_attention_heads,
            intermediate: cfg.intermediate_size,
            eps: cfg.layer_norm_eps,
        };
        let layers = load_layers(vb.pp("encoder.layer"), cfg.num_hidden_layers, &dims, &MPNET_LAYER)?;
        let buckets = cfg.relative_attention_num_buckets;
        Ok(Self {
            word: embedding(cfg.vocab_size, h, emb.pp("word_embeddings"))?,
            position: embedding(cfg.max_position_embeddings, h, emb.pp("position_embeddings"))?,
            norm: layer_norm(h, cfg.layer_norm_eps, emb.pp("LayerNorm"))?,
            layers,
            relative_bias: vb.get(
                (buckets, cfg.num_attention_heads),
                "encoder.relative_attention_bias.weight",
            )?,
            buckets,
            position_offset: cfg.pad_token_id + 1,
            device: vb.device().clone(),
        })
    }

    /// Longest sequence the position embeddings allow.
    pub fn max_len(&self) -> CandleResult<usize> {
        Ok(self
            .position
            .embeddings()
            .dim(0)?
            .saturating_sub(self.position_offset as usize))
    }

    /// The relative position bias of a sequence of `n` tokens: `[heads, n, n]`.
    fn position_bias(&self, n: usize) -> CandleResult<Tensor> {
        let ids: Vec<u32> = (0..n as i64)
            .flat_map(|q| (0..n as i64).map(move |k| (q, k)))
            .map(|(q, k)| relative_position_bucket(k - q, self.buckets, MAX_DISTANCE) as u32)
            .collect();
        let ids = Tensor::from_vec(ids, n * n, &self.device)?;
        // [n*n, heads] -> [heads, n, n]
        let heads = self.relative_bias.dim(1)?;
        self.relative_bias
            .index_select(&ids, 0)?
            .t()?
            .contiguous()?
            .reshape((heads, n, n))
    }

    /// Mean-pooled, L2-normalised sentence vectors `[batch, hidden]` of the
    /// given sequences.
    pub fn embed(&self, seqs: &[&[u32]]) -> CandleResult<Tensor> {
        let (lens, ids, positions) = pack(seqs, self.position_offset, &self.device)?;
        let x = self
            .word
            .forward(&ids)?
            .add(&self.position.forward(&positions)?)?;
        let mut x = self.norm.forward(&x)?;
        // The bias of each length in the batch, computed once for all layers.
        let mut biases = HashMap::new();
        for &n in &lens {
            if let std::collections::hash_map::Entry::Vacant(e) = biases.entry(n) {
                e.insert(self.position_bias(n)?);
            }
        }
        let bias = |n: usize| -> CandleResult<Tensor> {
            biases
                .get(&n)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg(format!("no position bias for length {n}")))
        };
        for layer in &self.layers {
            x = layer.forward(&x, &lens, Some(&bias))?;
        }
        mean_pool_packed_normalize(&x, &lens)
    }
}

pub struct MpnetEmbedder {
    model: PackedMpnet,
    info: ModelInfo,
    dim: usize,
}

impl MpnetEmbedder {
    /// Loads `config.json`, `model.safetensors` and `tokenizer.json` from
    /// `dir`. The window is `sentence_bert_config.json`'s `max_seq_length`
    /// (384 for all-mpnet-base-v2) when present, else the model's position
    /// limit.
    pub fn load(dir: &Path, id: &str, device: &Device) -> Result<(Self, Arc<HfTokenizer>)> {
        let config: MpnetConfig = read_json(&dir.join("config.json"))?;
        let weights = dir.join("model.safetensors");
        let tensors = candle_core::safetensors::load(&weights, device)
            .map_err(|e| ModelError::load(weights.display(), e))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let model = PackedMpnet::load(vb, &config).map_err(|e| ModelError::load(weights.display(), e))?;
        let limit = model
            .max_len()
            .map_err(|e| ModelError::load(weights.display(), e))?;
        let tokenizer = HfTokenizer::from_file(&dir.join("tokenizer.json"))?;
        let info = sentence_embedder_info(dir, id, &tokenizer, ["<s>", "</s>"], limit)?;
        crate::device::log_model_loaded(id, device, DType::F32, "candle-packed-mpnet");
        let embedder = Self {
            model,
            info,
            dim: config.hidden_size,
        };
        Ok((embedder, Arc::new(tokenizer)))
    }
}

impl Embedder for MpnetEmbedder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn dim(&self) -> usize {
        self.dim
    }

    /// Sorted by length, then packed into sub-batches of a bounded number
    /// of tokens (equal lengths share attention matmuls).
    fn embed(&mut self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        crate::padding::check_window(batch, self.info.framing.max_len)?;
        let end = |order: &[usize], start| packed_sub_batch_end(batch, order, start);
        by_length(batch, end, |seqs| self.model.embed(seqs)?.to_vec2())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the bucket changes, from transformers 5.24's
    /// `MPNetEncoder.relative_position_bucket(torch.arange(-520, 521))`:
    /// (first relative position of a run, its bucket).
    const TORCH_EDGES: [(i64, usize); 31] = [
        (-520, 15),
        (-90, 14),
        (-63, 13),
        (-45, 12),
        (-31, 11),
        (-22, 10),
        (-15, 9),
        (-11, 8),
        (-7, 7),
        (-6, 6),
        (-5, 5),
        (-4, 4),
        (-3, 3),
        (-2, 2),
        (-1, 1),
        (0, 0),
        (1, 17),
        (2, 18),
        (3, 19),
        (4, 20),
        (5, 21),
        (6, 22),
        (7, 23),
        (8, 24),
        (12, 25),
        (16, 26),
        (23, 27),
        (32, 28),
        (46, 29),
        (64, 30),
        (91, 31),
    ];

    #[test]
    fn buckets_match_transformers() {
        let mut edges = Vec::new();
        let mut last = None;
        for rel in -520..=520 {
            let b = relative_position_bucket(rel, 32, MAX_DISTANCE);
            if last != Some(b) {
                edges.push((rel, b));
                last = Some(b);
            }
        }
        assert_eq!(edges, TORCH_EDGES);
    }
}
