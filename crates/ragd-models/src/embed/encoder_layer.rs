//! One post-norm transformer encoder layer over packed (padding-free)
//! batches: self-attention, then a GELU feed-forward, each with a residual
//! and a LayerNorm. BERT and MPNet share it under different weight names;
//! MPNet adds a relative position bias to the attention scores
//! ([`ScoreBias`]).
//!
//! The sequences of a batch are one `[tokens, hidden]` matrix: every linear
//! layer is one large matmul with no padding rows, and attention runs per
//! sequence (batched over heads and over runs of equal lengths). Q, K and V
//! are fused into one matmul at load time, with 1/sqrt(head_dim) folded into
//! the query projection.

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{layer_norm, linear, LayerNorm, Linear, VarBuilder};
use rayon::prelude::*;

use super::gelu::gelu_erf;

/// The packed batch of `seqs`: their lengths, the concatenated token ids
/// and each token's position (from `position_offset` in every sequence),
/// both `[tokens]` u32.
pub(super) fn pack(
    seqs: &[&[u32]],
    position_offset: u32,
    device: &Device,
) -> Result<(Vec<usize>, Tensor, Tensor)> {
    let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
    let tokens: usize = lens.iter().sum();
    let ids: Vec<u32> = seqs.iter().flat_map(|s| s.iter().copied()).collect();
    let positions: Vec<u32> = lens
        .iter()
        .flat_map(|&n| position_offset..position_offset + n as u32)
        .collect();
    let ids = Tensor::from_vec(ids, tokens, device)?;
    let positions = Tensor::from_vec(positions, tokens, device)?;
    Ok((lens, ids, positions))
}

/// Where one layer's weights live, relative to the layer.
pub(super) struct LayerNames {
    pub q: &'static str,
    pub k: &'static str,
    pub v: &'static str,
    pub attn_out: &'static str,
    pub attn_norm: &'static str,
    pub intermediate: &'static str,
    pub output: &'static str,
    pub out_norm: &'static str,
}

/// The sizes a layer is loaded with.
pub(super) struct LayerDims {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub eps: f64,
}

/// The `count` layers under `vb` (`{vb}.0`, `{vb}.1`, ...).
pub(super) fn load_layers(
    vb: VarBuilder,
    count: usize,
    dims: &LayerDims,
    names: &LayerNames,
) -> Result<Vec<Layer>> {
    (0..count)
        .map(|i| Layer::load(vb.pp(i.to_string()), dims, names))
        .collect()
}

/// Added to each head's attention scores before the softmax, by sequence
/// length `n`: a `[heads, n, n]` tensor.
pub(super) type ScoreBias<'a> = &'a (dyn Fn(usize) -> Result<Tensor> + Sync);

pub(super) struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
    heads: usize,
}

impl Layer {
    pub(super) fn load(vb: VarBuilder, dims: &LayerDims, names: &LayerNames) -> Result<Self> {
        let h = dims.hidden;
        let part = |name: &str| -> Result<(Tensor, Tensor)> {
            let l = vb.pp(name);
            Ok((l.get((h, h), "weight")?, l.get(h, "bias")?))
        };
        let (q, k, v) = (part(names.q)?, part(names.k)?, part(names.v)?);
        let scale = 1.0 / ((h / dims.heads) as f64).sqrt();
        let q = ((q.0 * scale)?, (q.1 * scale)?);
        let qkv = Linear::new(
            Tensor::cat(&[&q.0, &k.0, &v.0], 0)?,
            Some(Tensor::cat(&[&q.1, &k.1, &v.1], 0)?),
        );
        let (eps, inner) = (dims.eps, dims.intermediate);
        Ok(Self {
            qkv,
            attn_out: linear(h, h, vb.pp(names.attn_out))?,
            attn_norm: layer_norm(h, eps, vb.pp(names.attn_norm))?,
            intermediate: linear(h, inner, vb.pp(names.intermediate))?,
            output: linear(inner, h, vb.pp(names.output))?,
            out_norm: layer_norm(h, eps, vb.pp(names.out_norm))?,
            heads: dims.heads,
        })
    }

    /// `x`: `[tokens, hidden]`; `lens`: the packed sequences' lengths,
    /// summing to `tokens`.
    pub(super) fn forward(&self, x: &Tensor, lens: &[usize], bias: Option<ScoreBias>) -> Result<Tensor> {
        let (tokens, hidden) = x.dims2()?;
        let head_dim = hidden / self.heads;
        let qkv = self.qkv.forward(x)?.reshape((tokens, 3, self.heads, head_dim))?;
        let ctx = attention_per_sequence(&qkv, lens, bias)?;
        let x = self.attn_norm.forward(&(self.attn_out.forward(&ctx)? + x)?)?;
        let inner = gelu_erf(&self.intermediate.forward(&x)?)?;
        self.out_norm.forward(&(self.output.forward(&inner)? + x)?)
    }
}

/// Bidirectional attention of each packed sequence, with batched matmuls.
/// Consecutive sequences of equal length (common once a batch is sorted by
/// length) share one batched matmul; groups run in parallel. `qkv`:
/// `[tokens, 3, heads, head_dim]`; returns `[tokens, heads * head_dim]`.
fn attention_per_sequence(qkv: &Tensor, lens: &[usize], bias: Option<ScoreBias>) -> Result<Tensor> {
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
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(bias) = bias {
            scores = scores
                .reshape((g, heads, n, n))?
                .broadcast_add(&bias(n)?)?
                .reshape((g * heads, n, n))?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
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
