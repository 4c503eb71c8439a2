//! BERT encoder over packed (padding-free) batches, for the CPU.
//!
//! The sequences of a batch are concatenated into one `[tokens, hidden]`
//! matrix: every linear layer is one large matmul with no padding rows, and
//! attention runs per sequence with candle-nn's variable-length CPU flash
//! attention, so no `[batch, heads, seq, seq]` score tensor or mask is ever
//! built. Same weights and results as candle-transformers' `BertModel`
//! (Devlin et al., 2018); Q, K and V are fused into one matmul at load time.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::Config;

use super::gelu::gelu_erf;

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
}

impl Layer {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let h = cfg.hidden_size;
        let att = vb.pp("attention");
        let sa = att.pp("self");
        let part = |name: &str| -> Result<(Tensor, Tensor)> {
            let l = sa.pp(name);
            Ok((l.get((h, h), "weight")?, l.get(h, "bias")?))
        };
        let (q, k, v) = (part("query")?, part("key")?, part("value")?);
        let qkv = Linear::new(
            Tensor::cat(&[&q.0, &k.0, &v.0], 0)?,
            Some(Tensor::cat(&[&q.1, &k.1, &v.1], 0)?),
        );
        let eps = cfg.layer_norm_eps;
        Ok(Self {
            qkv,
            attn_out: linear(h, h, att.pp("output.dense"))?,
            attn_norm: layer_norm(h, eps, att.pp("output.LayerNorm"))?,
            intermediate: linear(h, cfg.intermediate_size, vb.pp("intermediate.dense"))?,
            output: linear(cfg.intermediate_size, h, vb.pp("output.dense"))?,
            out_norm: layer_norm(h, eps, vb.pp("output.LayerNorm"))?,
        })
    }

    /// `x`: `[tokens, hidden]`; `seqlens`: u32 `[batch]`, summing to `tokens`.
    fn forward(&self, x: &Tensor, seqlens: &Tensor, max_len: usize, heads: usize) -> Result<Tensor> {
        let (tokens, hidden) = x.dims2()?;
        let head_dim = hidden / heads;
        let qkv = self.qkv.forward(x)?.reshape((tokens, 3, heads, head_dim))?;
        let q = qkv.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?;
        let k = qkv.narrow(1, 1, 1)?.squeeze(1)?.contiguous()?;
        let v = qkv.narrow(1, 2, 1)?.squeeze(1)?.contiguous()?;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let ctx = candle_nn::attention::flash_attn_varlen_cpu(
            &q, &k, &v, None, seqlens, seqlens, max_len, max_len, scale, false, None, None,
        )?
        .reshape((tokens, hidden))?;
        let x = self.attn_norm.forward(&(self.attn_out.forward(&ctx)? + x)?)?;
        let inner = gelu_erf(&self.intermediate.forward(&x)?)?;
        self.out_norm.forward(&(self.output.forward(&inner)? + x)?)
    }
}

/// The BERT encoder (embeddings + layers), without pooler.
pub struct PackedBert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    device: Device,
}

impl PackedBert {
    /// Loads from a VarBuilder rooted where `embeddings.*` and `encoder.*`
    /// live (with or without a `bert.` prefix).
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let emb = vb.pp("embeddings");
        let h = cfg.hidden_size;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), cfg))
            .collect::<Result<_>>()?;
        Ok(Self {
            word: embedding(cfg.vocab_size, h, emb.pp("word_embeddings"))?,
            position: embedding(cfg.max_position_embeddings, h, emb.pp("position_embeddings"))?,
            token_type: embedding(cfg.type_vocab_size, h, emb.pp("token_type_embeddings"))?,
            norm: layer_norm(h, cfg.layer_norm_eps, emb.pp("LayerNorm"))?,
            layers,
            heads: cfg.num_attention_heads,
            device: vb.device().clone(),
        })
    }

    /// Mean-pooled, L2-normalised sentence vectors `[batch, hidden]` of the
    /// given sequences.
    pub fn embed(&self, seqs: &[&[u32]]) -> Result<Tensor> {
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let tokens: usize = lens.iter().sum();
        let max_len = lens.iter().copied().max().unwrap_or(0);
        let ids: Vec<u32> = seqs.iter().flat_map(|s| s.iter().copied()).collect();
        let positions: Vec<u32> = lens.iter().flat_map(|&n| 0..n as u32).collect();
        let ids = Tensor::from_vec(ids, tokens, &self.device)?;
        let positions = Tensor::from_vec(positions, tokens, &self.device)?;
        let type0 = self
            .token_type
            .forward(&Tensor::zeros(1, DType::U32, &self.device)?)?;
        let x = self
            .word
            .forward(&ids)?
            .add(&self.position.forward(&positions)?)?
            .broadcast_add(&type0)?;
        let mut x = self.norm.forward(&x)?;
        let seqlens = Tensor::from_vec(
            lens.iter().map(|&n| n as u32).collect::<Vec<_>>(),
            lens.len(),
            &self.device,
        )?;
        for layer in &self.layers {
            x = layer.forward(&x, &seqlens, max_len, self.heads)?;
        }
        // Mean pooling as one matmul: row i of `pool` holds 1/len_i over
        // sequence i's tokens.
        let mut pool = vec![0f32; lens.len() * tokens];
        let mut start = 0;
        for (i, &n) in lens.iter().enumerate() {
            pool[i * tokens + start..i * tokens + start + n].fill(1.0 / n.max(1) as f32);
            start += n;
        }
        let mean = Tensor::from_vec(pool, (lens.len(), tokens), &self.device)?.matmul(&x)?;
        let norm = mean
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        mean.broadcast_div(&norm)
    }
}
