//! The NanoGuard network (`nanoguard/model.py`, `Classifier`) in candle.
//!
//! Fidelity notes, from what PyTorch actually computes on the CPU:
//! - `load_state_dict` copies the BF16 embedding into the model's F32
//!   parameter, so every activation is F32; only the values of the
//!   embedding are BF16-rounded.
//! - The rotary tables are registered buffers computed in F32 and cast to
//!   BF16; they meet F32 activations, so their values are BF16-rounded and
//!   the arithmetic is F32.
//! - `F.rms_norm` without eps uses the F32 epsilon, and has no weight.
//! - Attention is bidirectional with no mask: padding is attended to. Only
//!   the mean pooling is masked.

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::ops::{layer_norm, rms_norm, softmax_last_dim};
use candle_nn::rotary_emb::rope;

use super::nanoguard_checkpoint::NanoGuardConfig;

/// `torch.finfo(torch.float32).eps`, the default of `F.rms_norm` on F32.
const RMS_EPS: f32 = f32::EPSILON;
/// `nn.LayerNorm`'s default.
const LAYER_NORM_EPS: f32 = 1e-5;
const ROPE_BASE: f32 = 10_000.0;

/// One transformer block; weights are stored transposed (`[in, out]`) so a
/// linear layer is one 2-D matmul over all tokens of the batch.
struct Block {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_out: Tensor,
    fc: Tensor,
    mlp_out: Tensor,
}

pub struct NanoGuardModel {
    config: NanoGuardConfig,
    wte: Tensor,
    blocks: Vec<Block>,
    resid_lambdas: Vec<f32>,
    x0_lambdas: Vec<f32>,
    cls_norm_w: Tensor,
    cls_norm_b: Tensor,
    cls_head_t: Tensor,
    cls_head_b: Tensor,
    cos: Tensor,
    /// `-sin`: candle's `rope` rotates the other way round from NanoGuard.
    neg_sin: Tensor,
    ones_embd: Tensor,
    ones_head: Tensor,
}

impl NanoGuardModel {
    pub fn new(config: NanoGuardConfig, tensors: &HashMap<String, Tensor>, device: &Device) -> Result<Self> {
        let get = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = tensors
                .get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("tensor {name} is missing")))?;
            if t.dims() != shape {
                candle_core::bail!("tensor {name} has shape {:?}, expected {shape:?}", t.dims());
            }
            t.to_dtype(DType::F32)?.to_device(device)
        };
        let linear_t = |name: &str, out: usize, inp: usize| get(name, &[out, inp])?.t()?.contiguous();
        let c = &config;
        let e = c.n_embd;
        let blocks = (0..c.n_layer)
            .map(|i| {
                let p = format!("transformer.h.{i}");
                Ok(Block {
                    q: linear_t(&format!("{p}.attn.c_q.weight"), e, e)?,
                    k: linear_t(&format!("{p}.attn.c_k.weight"), e, e)?,
                    v: linear_t(&format!("{p}.attn.c_v.weight"), e, e)?,
                    attn_out: linear_t(&format!("{p}.attn.c_proj.weight"), e, e)?,
                    fc: linear_t(&format!("{p}.mlp.c_fc.weight"), 4 * e, e)?,
                    mlp_out: linear_t(&format!("{p}.mlp.c_proj.weight"), e, 4 * e)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let lambdas = |name: &str| get(name, &[c.n_layer])?.to_vec1::<f32>();
        let head_dim = e / c.n_head;
        let (cos, sin) = rotary_tables(c.sequence_len, head_dim);
        let table = |v: Vec<f32>| Tensor::from_vec(v, (c.sequence_len, head_dim / 2), device);
        Ok(Self {
            wte: get("transformer.wte.weight", &[c.vocab_size, e])?,
            resid_lambdas: lambdas("resid_lambdas")?,
            x0_lambdas: lambdas("x0_lambdas")?,
            cls_norm_w: get("cls_norm.weight", &[e])?,
            cls_norm_b: get("cls_norm.bias", &[e])?,
            cls_head_t: linear_t("cls_head.weight", c.num_classes, e)?,
            cls_head_b: get("cls_head.bias", &[c.num_classes])?,
            cos: table(cos)?,
            neg_sin: table(sin.into_iter().map(|s| -s).collect())?,
            ones_embd: Tensor::ones(e, DType::F32, device)?,
            ones_head: Tensor::ones(head_dim, DType::F32, device)?,
            blocks,
            config,
        })
    }

    pub fn config(&self) -> &NanoGuardConfig {
        &self.config
    }

    /// Class probabilities for `ids` (`[B, T]`, U32) with `mask` (`[B, T]`,
    /// F32, 1 on real tokens) marking the tokens that are pooled.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let pooled = self.pooled(ids, mask)?;
        let logits = pooled.matmul(&self.cls_head_t)?.broadcast_add(&self.cls_head_b)?;
        softmax_last_dim(&logits)
    }

    /// What the classification head sees (`[B, n_embd]`): the masked mean
    /// of the last hidden states, layer-normed.
    pub fn pooled(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let e = self.config.n_embd;
        let norm = |x: &Tensor| rms_norm(x, &self.ones_embd, RMS_EPS);
        let mut x = norm(&self.wte.index_select(&ids.flatten_all()?, 0)?)?;
        let x0 = x.clone();
        for (i, block) in self.blocks.iter().enumerate() {
            x = ((&x * f64::from(self.resid_lambdas[i]))? + (&x0 * f64::from(self.x0_lambdas[i]))?)?;
            x = (&x + self.attention(block, &norm(&x)?, b, t)?)?;
            let h = norm(&x)?.matmul(&block.fc)?.relu()?.sqr()?;
            x = (&x + h.matmul(&block.mlp_out)?)?;
        }
        let x = norm(&x)?.reshape((b, t, e))?;
        let mask = mask.unsqueeze(2)?;
        let count = mask.sum(1)?.clamp(1f32, f32::MAX)?;
        let pooled = x.broadcast_mul(&mask)?.sum(1)?.broadcast_div(&count)?;
        layer_norm(&pooled, &self.cls_norm_w, &self.cls_norm_b, LAYER_NORM_EPS)
    }

    /// Unmasked bidirectional attention of `x` (`[B*T, C]`), output projected.
    fn attention(&self, block: &Block, x: &Tensor, b: usize, t: usize) -> Result<Tensor> {
        let h = self.config.n_head;
        let d = self.config.n_embd / h;
        let heads = |w: &Tensor| x.matmul(w)?.reshape((b, t, h, d))?.transpose(1, 2)?.contiguous();
        let cos = self.cos.narrow(0, 0, t)?;
        let neg_sin = self.neg_sin.narrow(0, 0, t)?;
        let rotate_norm = |w: &Tensor| rms_norm(&rope(&heads(w)?, &cos, &neg_sin)?, &self.ones_head, RMS_EPS);
        let q = rotate_norm(&block.q)?;
        let k = rotate_norm(&block.k)?;
        let v = heads(&block.v)?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?;
        let y = softmax_last_dim(&scores)?.matmul(&v)?;
        let y = y.transpose(1, 2)?.reshape((b * t, h * d))?;
        y.matmul(&block.attn_out)
    }

    /// The largest id the embedding accepts, plus one.
    pub fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }
}

/// `Classifier._precompute_rotary(seq_len, head_dim)` without the 2x
/// headroom: F32 angles, cos and sin rounded to BF16 (as F32 values).
fn rotary_tables(seq_len: usize, head_dim: usize) -> (Vec<f32>, Vec<f32>) {
    let inv_freq: Vec<f32> = (0..head_dim)
        .step_by(2)
        .map(|c| 1.0 / ROPE_BASE.powf(c as f32 / head_dim as f32))
        .collect();
    let bf16 = |v: f32| half::bf16::from_f32(v).to_f32();
    let mut cos = Vec::with_capacity(seq_len * inv_freq.len());
    let mut sin = Vec::with_capacity(seq_len * inv_freq.len());
    for t in 0..seq_len {
        for f in &inv_freq {
            let angle = t as f32 * f;
            cos.push(bf16(angle.cos()));
            sin.push(bf16(angle.sin()));
        }
    }
    (cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotary_tables_are_bf16_rounded() {
        let (cos, sin) = rotary_tables(3, 4);
        assert_eq!(cos.len(), 6);
        assert_eq!(cos[0], 1.0);
        assert_eq!(sin[0], 0.0);
        // t = 1, inv_freq = 1: cos(1) = 0.5403023 -> bf16 0.5390625.
        assert_eq!(cos[2], 0.5390625);
        assert_eq!(sin[2], half::bf16::from_f32(1f32.sin()).to_f32());
        // t = 2, inv_freq = 1e-2.
        assert_eq!(sin[5], half::bf16::from_f32(0.02f32.sin()).to_f32());
    }
}
