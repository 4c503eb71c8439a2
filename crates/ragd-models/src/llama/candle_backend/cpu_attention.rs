//! Attention on the CPU for the candle backend: ragd's paged-attention
//! kernel run directly on the cache tensors' storage. Each query token
//! reduces over exactly its own keys in a fixed order, so a sequence's
//! output is the same to the bit whatever else is in the batch and however
//! its prompt was chunked. The gathered matmul path of [`super::attention`]
//! cannot promise that on the CPU: gemm's blocking (and so its rounding)
//! depends on the padded key count and on how many query rows there are.

use candle_core::{CpuStorage, Result, Storage, Tensor};
use half::slice::HalfFloatSliceExt;
use ragd_kernels::{paged_attention_over, KvShape, KvView, QueryToken};

/// `q` (`[n, n_heads * head_dim]`, f32, on the CPU) attending through
/// `tokens` to the layer's `k`/`v` cache tensors (contiguous, CPU).
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    shape: KvShape,
    tokens: &[QueryToken<'_>],
    n_heads: usize,
    scale: f32,
) -> Result<Tensor> {
    let q_host = q.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; q_host.len()];
    let (ks, k_layout) = k.storage_and_layout();
    let (vs, v_layout) = v.storage_and_layout();
    if !k_layout.is_contiguous()
        || !v_layout.is_contiguous()
        || k_layout.start_offset() + v_layout.start_offset() != 0
    {
        candle_core::bail!("the KV cache tensors must be whole and contiguous");
    }
    let (kv, vv) = match (&*ks, &*vs) {
        (Storage::Cpu(CpuStorage::F32(k)), Storage::Cpu(CpuStorage::F32(v))) => {
            (KvView::F32(k), KvView::F32(v))
        }
        (Storage::Cpu(CpuStorage::F16(k)), Storage::Cpu(CpuStorage::F16(v))) => (
            KvView::F16(k.as_slice().reinterpret_cast()),
            KvView::F16(v.as_slice().reinterpret_cast()),
        ),
        _ => candle_core::bail!("the CPU attention needs f32 or f16 cache tensors on the CPU"),
    };
    paged_attention_over(&q_host, n_heads, kv, vv, shape, tokens, scale, &mut out);
    drop((ks, vs));
    Tensor::from_vec(out, q.shape(), q.device())
}
