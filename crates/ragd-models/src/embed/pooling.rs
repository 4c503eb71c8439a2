//! Mean pooling over the attention mask and L2 normalisation, as
//! sentence-transformers' `Pooling(mean)` + `Normalize` modules do.

use candle_core::{DType, Result, Tensor, D};

/// `hidden`: `[batch, seq, dim]`; `mask`: `[batch, seq]` of 0/1 (any dtype).
/// Returns `[batch, dim]` unit vectors.
pub fn mean_pool_normalize(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(hidden.dtype())?.unsqueeze(D::Minus1)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
    l2_normalize(&summed.broadcast_div(&counts)?)
}

/// Rows of `x` (`[batch, dim]`) scaled to unit length, in f32.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let x = x.to_dtype(DType::F32)?;
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&norm)
}

/// Mean pooling of packed sequences (`x`: `[tokens, dim]`, sequence `i` the
/// next `lens[i]` rows) as one matmul, then L2 normalisation: `[lens.len(), dim]`.
pub fn mean_pool_packed_normalize(x: &Tensor, lens: &[usize]) -> Result<Tensor> {
    let tokens: usize = lens.iter().sum();
    // Row i of `pool` holds 1/len_i over sequence i's tokens.
    let mut pool = vec![0f32; lens.len() * tokens];
    let mut start = 0;
    for (i, &n) in lens.iter().enumerate() {
        pool[i * tokens + start..i * tokens + start + n].fill(1.0 / n.max(1) as f32);
        start += n;
    }
    let pool = Tensor::from_vec(pool, (lens.len(), tokens), x.device())?.to_dtype(x.dtype())?;
    l2_normalize(&pool.matmul(x)?)
}
