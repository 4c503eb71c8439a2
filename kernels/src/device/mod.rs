//! Paged attention on candle tensors, on any device: the decode step of
//! the device-generic generator. One query token per sequence attends to
//! positions `0..context_lens[s]` of its sequence, read through its block
//! table (the same cache layout as the CPU kernels: `[num_blocks,
//! block_size, n_kv_heads, head_dim]`).
//!
//! On CUDA (with the `cuda` feature) a fused kernel (`kernels/cuda/
//! paged_attention.cu`) runs it; everywhere else the portable version,
//! built from candle ops, which is also the reference the kernel is tested
//! against.

#[cfg(feature = "cuda")]
mod cuda;
mod portable;

use candle_core::{DType, Result, Tensor};

pub use portable::paged_attention_decode_portable;

/// Decode attention through block tables.
///
/// - `q`: `[num_seqs, n_heads, head_dim]`, f32, f16 or bf16
/// - `k_cache`, `v_cache`: `[num_blocks, block_size, n_kv_heads, head_dim]`,
///   f16, bf16 or f32
/// - `block_tables`: `[num_seqs, max_blocks_per_seq]` u32 (rows padded with
///   any valid block id)
/// - `context_lens`: `[num_seqs]` u32, the positions each sequence attends
///   to (the current token's K/V already written)
///
/// Head `h` reads KV head `h / (n_heads / n_kv_heads)`. Returns
/// `[num_seqs, n_heads, head_dim]` in `q`'s dtype; the softmax is in f32. A
/// sequence with an empty context gets zeros.
pub fn paged_attention_decode(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    block_tables: &Tensor,
    context_lens: &Tensor,
    scale: f32,
) -> Result<Tensor> {
    let shape = DecodeShape::check(q, k_cache, v_cache, block_tables, context_lens)?;
    #[cfg(feature = "cuda")]
    if q.device().is_cuda() && cuda::supports(&shape) {
        return cuda::paged_attention_decode(q, k_cache, v_cache, block_tables, context_lens, scale, &shape);
    }
    let _ = shape;
    paged_attention_decode_portable(q, k_cache, v_cache, block_tables, context_lens, scale)
}

/// The dimensions of one decode call, checked against each other.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodeShape {
    pub num_seqs: usize,
    pub n_heads: usize,
    pub head_dim: usize,
    pub block_size: usize,
    pub n_kv_heads: usize,
    pub max_blocks_per_seq: usize,
}

impl DecodeShape {
    pub(crate) fn check(
        q: &Tensor,
        k_cache: &Tensor,
        v_cache: &Tensor,
        block_tables: &Tensor,
        context_lens: &Tensor,
    ) -> Result<Self> {
        let (num_seqs, n_heads, head_dim) = q.dims3()?;
        let (_, block_size, n_kv_heads, kv_dim) = k_cache.dims4()?;
        let (table_rows, max_blocks_per_seq) = block_tables.dims2()?;
        let lens = context_lens.dims1()?;
        if v_cache.dims() != k_cache.dims() {
            candle_core::bail!(
                "v_cache {:?} differs from k_cache {:?}",
                v_cache.dims(),
                k_cache.dims()
            );
        }
        if v_cache.dtype() != k_cache.dtype() {
            candle_core::bail!("v_cache is {:?}, k_cache {:?}", v_cache.dtype(), k_cache.dtype());
        }
        if kv_dim != head_dim {
            candle_core::bail!("head_dim: q has {head_dim}, the cache {kv_dim}");
        }
        if n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            candle_core::bail!("n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}");
        }
        if table_rows != num_seqs || lens != num_seqs {
            candle_core::bail!("{num_seqs} sequences, {table_rows} block-table rows, {lens} context lengths");
        }
        if block_tables.dtype() != DType::U32 || context_lens.dtype() != DType::U32 {
            candle_core::bail!("block_tables and context_lens must be u32");
        }
        Ok(Self {
            num_seqs,
            n_heads,
            head_dim,
            block_size,
            n_kv_heads,
            max_blocks_per_seq,
        })
    }
}
