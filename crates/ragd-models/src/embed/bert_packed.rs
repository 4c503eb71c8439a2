//! BERT encoder over packed (padding-free) batches, for the CPU.
//!
//! The sequences of a batch are concatenated into one `[tokens, hidden]`
//! matrix: every linear layer is one large matmul with no padding rows, and
//! attention runs per sequence (batched over heads), so no padded
//! `[batch, heads, seq, seq]` score tensor or mask is ever built. (candle-nn's
//! varlen CPU flash attention was measured 20% slower end to end here: its
//! online softmax does per-key scalar work that matmuls avoid.) Same weights and results as candle-transformers' `BertModel`
//! (Devlin et al., 2018); Q, K and V are fused into one matmul at load time.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::Config;
use rayon::prelude::*;

use super::gelu::gelu_erf;
use super::pooling::l2_normalize;

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
        // Fold attention's 1/sqrt(head_dim) into the query projection.
        let scale = 1.0 / ((h / cfg.num_attention_heads) as f64).sqrt();
        let q = ((q.0 * scale)?, (q.1 * scale)?);
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

    /// `x`: `[tokens, hidden]`; `lens`: the packed sequences' lengths, summing to `tokens`.
    fn forward(&self, x: &Tensor, lens: &[usize], heads: usize) -> Result<Tensor> {
        let (tokens, hidden) = x.dims2()?;
        let head_dim = hidden / heads;
        let qkv = self.qkv.forward(x)?.reshape((tokens, 3, heads, head_dim))?;
        let ctx = attention_per_sequence(&qkv, lens)?;
        let x = self.attn_norm.forward(&(self.attn_out.forward(&ctx)? + x)?)?;
        let inner = gelu_erf(&self.intermediate.forward(&x)?)?;
        self.out_norm.forward(&(self.output.forward(&inner)? + x)?)
    }
}

/// Bidirectional attention of each packed sequence, with batched matmuls.
/// Consecutive sequences of equal length (common once a batch is sorted by
/// length) share one batched matmul, so short queries do not pay one small
/// op per sequence; groups run in parallel. `qkv`: `[tokens, 3, heads,
/// head_dim]`; returns `[tokens, heads * head_dim]`.
fn attention_per_sequence(qkv: &Tensor, lens: &[usize]) -> Result<Tensor> {
    let (_, _, heads, head_dim) = qkv.dims4()?;
    // (first token, sequences, length) of each run of equal lengths.
    let mut groups: Vec<(usize, usize, usize)> = Vec::new();
    let mut start = 0;
    for &n in lens {
        match groups.last_mut() {
            Some((_, count, len)) if *len == n => *count += 1,
            _ => groups.push((start, 1, n)),
        }
        start += n;
    }
    let one = |&(start, g, n): &(usize, usize, usize)| -> Result<Tensor> {
        // [g*n, 3, H, D] -> [3, g, H, n, D] -> [3, g*H, n, D]
        let s = qkv
            .narrow(0, start, g * n)?
            .reshape((g, n, 3, heads, head_dim))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?
            .reshape((3, g * heads, n, head_dim))?;
        let (q, k, v) = (s.get(0)?, s.get(1)?, s.get(2)?);
        let probs = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
        // [g*H, n, D] -> [g, n, H, D] -> [g*n, H*D]
        probs
            .matmul(&v)?
            .reshape((g, heads, n, head_dim))?
            .transpose(1, 2)?
            .reshape((g * n, heads * head_dim))
    };
    let outs: Vec<Tensor> = groups.par_iter().map(one).collect::<Result<_>>()?;
    Tensor::cat(&outs, 0)
}

/// The BERT encoder (embeddings + layers), without pooler. Also runs
/// RoBERTa-family encoders (XLM-R): the same layers, with positions
/// counted from `pad_token_id + 1`.
pub struct PackedBert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    /// Position id of a sequence's first token: 0 for BERT, `pad_token_id
    /// + 1` for RoBERTa.
    position_offset: u32,
    device: Device,
}

/// Whether `cfg` describes a RoBERTa-family model (positions offset by
/// the padding id, weights under `roberta.`).
pub fn is_roberta(cfg: &Config) -> bool {
    matches!(
        cfg.model_type.as_deref(),
        Some("roberta" | "xlm-roberta" | "camembert")
    )
}

impl PackedBert {
    /// Loads from a VarBuilder rooted where `embeddings.*` and `encoder.*`
    /// live (with or without a `bert.` or `roberta.` prefix).
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let vb = match ["bert", "roberta"]
            .into_iter()
            .find(|p| vb.contains_tensor(&format!("{p}.embeddings.word_embeddings.weight")))
        {
            Some(prefix) => vb.pp(prefix),
            None => vb,
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
            position_offset: if is_roberta(cfg) {
                cfg.pad_token_id as u32 + 1
            } else {
                0
            },
            device: vb.device().clone(),
        })
    }

    /// Longest sequence the position embeddings allow.
    pub fn max_len(&self) -> candle_core::Result<usize> {
        Ok(self
            .position
            .embeddings()
            .dim(0)?
            .saturating_sub(self.position_offset as usize))
    }

    /// Hidden states `[tokens, hidden]` of the packed sequences. `type_ids`:
    /// one token type per token of the packed batch; `None`: all 0.
    pub fn encode(&self, seqs: &[&[u32]], type_ids: Option<Vec<u32>>) -> Result<Tensor> {
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let tokens: usize = lens.iter().sum();
        let ids: Vec<u32> = seqs.iter().flat_map(|s| s.iter().copied()).collect();
        let offset = self.position_offset;
        let positions: Vec<u32> = lens.iter().flat_map(|&n| offset..offset + n as u32).collect();
        let ids = Tensor::from_vec(ids, tokens, &self.device)?;
        let positions = Tensor::from_vec(positions, tokens, &self.device)?;
        let x = self
            .word
            .forward(&ids)?
            .add(&self.position.forward(&positions)?)?;
        let x = match type_ids {
            Some(types) => x.add(&self.token_type.forward(&Tensor::from_vec(
                types,
                tokens,
                &self.device,
            )?)?)?,
            None => {
                let type0 = self
                    .token_type
                    .forward(&Tensor::zeros(1, DType::U32, &self.device)?)?;
                x.broadcast_add(&type0)?
            }
        };
        let mut x = self.norm.forward(&x)?;
        for layer in &self.layers {
            x = layer.forward(&x, &lens, self.heads)?;
        }
        Ok(x)
    }

    /// The hidden state of each sequence's first token (`[CLS]` or `<s>`):
    /// `[batch, hidden]`. `type_ids` as for [`Self::encode`].
    pub fn first_tokens(&self, seqs: &[&[u32]], type_ids: Option<Vec<u32>>) -> Result<Tensor> {
        let x = self.encode(seqs, type_ids)?;
        let mut starts = Vec::with_capacity(seqs.len());
        let mut at = 0u32;
        for s in seqs {
            starts.push(at);
            at += s.len() as u32;
        }
        x.index_select(&Tensor::from_vec(starts, seqs.len(), &self.device)?, 0)
    }

    /// Mean-pooled, L2-normalised sentence vectors `[batch, hidden]` of the
    /// given sequences.
    pub fn embed(&self, seqs: &[&[u32]]) -> Result<Tensor> {
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let tokens: usize = lens.iter().sum();
        let x = self.encode(seqs, None)?;
        // Mean pooling as one matmul: row i of `pool` holds 1/len_i over
        // sequence i's tokens.
        let mut pool = vec![0f32; lens.len() * tokens];
        let mut start = 0;
        for (i, &n) in lens.iter().enumerate() {
            pool[i * tokens + start..i * tokens + start + n].fill(1.0 / n.max(1) as f32);
            start += n;
        }
        let mean = Tensor::from_vec(pool, (lens.len(), tokens), &self.device)?.matmul(&x)?;
        l2_normalize(&mean)
    }
}
