//! The paged KV cache as device tensors: per layer, K and V each
//! `[num_blocks * block_size, n_kv_heads * head_dim]` (a view of
//! `[num_blocks, block_size, n_kv_heads, head_dim]`), written in place by
//! slot index and read a sequence's blocks at a time.

use candle_core::{DType, Device, Result, Tensor};
use ragd_kernels::KvShape;

pub struct DeviceKvCache {
    layers: Vec<[Tensor; 2]>,
    shape: KvShape,
    dtype: DType,
}

impl DeviceKvCache {
    /// Zeroed tensors: on the CPU an untouched zeroed allocation costs
    /// address space, not memory; on a GPU the whole budget is taken up
    /// front, as vLLM does.
    pub fn new(n_layers: usize, shape: KvShape, dtype: DType, device: &Device) -> Result<Self> {
        let dims = (shape.num_blocks * shape.block_size, shape.row_len());
        let layers = (0..n_layers)
            .map(|_| {
                Ok([
                    Tensor::zeros(dims, dtype, device)?,
                    Tensor::zeros(dims, dtype, device)?,
                ])
            })
            .collect::<Result<_>>()?;
        Ok(Self { layers, shape, dtype })
    }

    pub fn shape(&self) -> KvShape {
        self.shape
    }

    /// Writes the rows of `k` and `v` (`[n, row_len]`) into `slots`
    /// (`[n, row_len]` u32, every value of a row the slot `block *
    /// block_size + offset` of that token).
    pub fn write(&self, layer: usize, slots: &Tensor, k: &Tensor, v: &Tensor) -> Result<()> {
        let [kc, vc] = &self.layers[layer];
        kc.scatter_set(slots, &k.to_dtype(self.dtype)?, 0)?;
        vc.scatter_set(slots, &v.to_dtype(self.dtype)?, 0)
    }

    /// K and V of `layer` as stored: `[num_blocks * block_size, row_len]`.
    pub fn layer(&self, layer: usize) -> &[Tensor; 2] {
        &self.layers[layer]
    }

    /// K and V of `layer` as `[num_blocks, block_size, n_kv_heads, head_dim]`
    /// views (no copy): the layout of the fused attention kernel.
    pub fn blocks(&self, layer: usize) -> Result<[Tensor; 2]> {
        let s = self.shape;
        let dims = (s.num_blocks, s.block_size, s.n_kv_heads, s.head_dim);
        let [k, v] = &self.layers[layer];
        Ok([k.reshape(dims)?, v.reshape(dims)?])
    }
}
