//! Paged decode attention from candle ops: gather each sequence's blocks by
//! its table, then a masked matmul-softmax-matmul per KV-head group, in f32.
//! Runs on every device; the reference for the fused CUDA kernel.

use candle_core::{DType, Device, Result, Tensor, D};

use super::DecodeShape;

/// [`super::paged_attention_decode`] from candle ops (same arguments, same
/// result). Memory: every sequence's whole table is gathered, so a batch
/// costs `num_seqs * max_blocks_per_seq * block_size` cache rows in f32.
pub fn paged_attention_decode_portable(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    block_tables: &Tensor,
    context_lens: &Tensor,
    scale: f32,
) -> Result<Tensor> {
    let shape = DecodeShape::check(q, k_cache, v_cache, block_tables, context_lens)?;
    let DecodeShape {
        num_seqs,
        n_heads,
        head_dim,
        block_size,
        n_kv_heads,
        max_blocks_per_seq,
    } = shape;
    let group = n_heads / n_kv_heads;
    let positions = max_blocks_per_seq * block_size;
    // [num_seqs, n_kv_heads, positions, head_dim], f32.
    let gather = |cache: &Tensor| -> Result<Tensor> {
        cache
            .index_select(&block_tables.flatten_all()?, 0)?
            .reshape((num_seqs, positions, n_kv_heads, head_dim))?
            .transpose(1, 2)?
            .to_dtype(DType::F32)?
            .contiguous()
    };
    let keys = gather(k_cache)?;
    let values = gather(v_cache)?;
    // Heads of one KV head are adjacent: [num_seqs, n_kv_heads, group, head_dim].
    let queries = (q
        .to_dtype(DType::F32)?
        .reshape((num_seqs, n_kv_heads, group, head_dim))?
        * scale as f64)?;
    let scores = queries.matmul(&keys.transpose(2, 3)?.contiguous()?)?;
    let scores = mask_beyond_context(&scores, context_lens, positions, q.device())?;
    let probs = softmax_last_dim(&scores)?;
    probs
        .matmul(&values)?
        .reshape((num_seqs, n_heads, head_dim))?
        .to_dtype(q.dtype())
}

/// `scores` `[num_seqs, n_kv_heads, group, positions]` with every position
/// at or past its sequence's context length set to -inf.
fn mask_beyond_context(
    scores: &Tensor,
    context_lens: &Tensor,
    positions: usize,
    device: &Device,
) -> Result<Tensor> {
    let num_seqs = context_lens.dims1()?;
    let position = Tensor::arange(0u32, positions as u32, device)?.reshape((1, 1, 1, positions))?;
    let lens = context_lens.reshape((num_seqs, 1, 1, 1))?;
    let outside = position.broadcast_ge(&lens)?.broadcast_as(scores.shape())?;
    let neg_inf = Tensor::new(f32::NEG_INFINITY, device)?.broadcast_as(scores.shape())?;
    outside.where_cond(&neg_inf, scores)
}

/// Softmax over the last dimension; a row that is all -inf (an empty
/// context) gives zeros rather than NaN.
fn softmax_last_dim(scores: &Tensor) -> Result<Tensor> {
    let max = scores.max_keepdim(D::Minus1)?.maximum(f32::MIN)?;
    let exp = scores.broadcast_sub(&max)?.exp()?;
    let sum = exp.sum_keepdim(D::Minus1)?.maximum(f32::MIN_POSITIVE)?;
    exp.broadcast_div(&sum)
}
