//! The fused CUDA decode kernel (`kernels/cuda/paged_attention.cu`, PTX
//! built by build.rs), launched as a candle `CustomOp3` over (q, k_cache,
//! v_cache) that also holds the block tables and context lengths.
#![allow(unsafe_code)] // kernel launches are FFI

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaStorage, CudaStorageSlice, WrapErr};
use candle_core::{CpuStorage, CudaDevice, CustomOp3, Layout, Result, Shape, Storage, Tensor};

use super::DecodeShape;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/paged_attention.ptx"));
const MODULE: &str = "ragd_paged_attention";
/// Warps per block: `NUM_WARPS` in the .cu file.
const NUM_WARPS: u32 = 8;
/// Dims per lane the kernel is instantiated for (head_dim <= 32 * 8).
const ELEMS: [usize; 4] = [1, 2, 4, 8];

/// Whether the kernel handles this shape (head_dim up to 256).
pub(super) fn supports(shape: &DecodeShape) -> bool {
    shape.head_dim <= 32 * ELEMS[ELEMS.len() - 1]
}

pub(super) fn paged_attention_decode(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    block_tables: &Tensor,
    context_lens: &Tensor,
    scale: f32,
    shape: &DecodeShape,
) -> Result<Tensor> {
    let op = FusedDecode {
        block_tables: block_tables.contiguous()?,
        context_lens: context_lens.contiguous()?,
        scale,
        shape: *shape,
    };
    q.contiguous()?
        .apply_op3_no_bwd(&k_cache.contiguous()?, &v_cache.contiguous()?, &op)
}

struct FusedDecode {
    block_tables: Tensor,
    context_lens: Tensor,
    scale: f32,
    shape: DecodeShape,
}

/// The contiguous part of `slice` that `layout` covers.
fn view<'a, T>(slice: &'a CudaSlice<T>, layout: &Layout, what: &str) -> Result<CudaView<'a, T>> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(slice.slice(start..end)),
        None => candle_core::bail!("paged attention: {what} must be contiguous"),
    }
}

/// A u32 tensor's device storage, viewed.
fn with_u32<R>(t: &Tensor, what: &str, f: impl FnOnce(CudaView<'_, u32>) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cuda(CudaStorage {
            slice: CudaStorageSlice::U32(s),
            ..
        }) => f(view(s, layout, what)?),
        _ => candle_core::bail!("paged attention: {what} must be a u32 tensor on the CUDA device"),
    }
}

fn type_name(s: &CudaStorage) -> Result<&'static str> {
    Ok(match &s.slice {
        CudaStorageSlice::F32(_) => "f32",
        CudaStorageSlice::F16(_) => "f16",
        CudaStorageSlice::BF16(_) => "bf16",
        _ => candle_core::bail!("paged attention: unsupported dtype {:?}", s.dtype()),
    })
}

impl FusedDecode {
    /// Launches the kernel for query type `Q` and cache type `KV`.
    #[allow(clippy::too_many_arguments)]
    fn launch<Q: DeviceRepr, KV: DeviceRepr>(
        &self,
        dev: &CudaDevice,
        name: &str,
        q: CudaView<'_, Q>,
        k: CudaView<'_, KV>,
        v: CudaView<'_, KV>,
        tables: CudaView<'_, u32>,
        lens: CudaView<'_, u32>,
    ) -> Result<CudaSlice<Q>> {
        let s = &self.shape;
        let out = unsafe { dev.alloc::<Q>(s.num_seqs * s.n_heads * s.head_dim) }?;
        let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
        let cfg = LaunchConfig {
            grid_dim: (s.n_heads as u32, s.num_seqs as u32, 1),
            block_dim: (32 * NUM_WARPS, 1, 1),
            shared_mem_bytes: NUM_WARPS * (s.head_dim as u32 + 2) * 4,
        };
        let ints = [
            s.n_heads,
            s.n_kv_heads,
            s.head_dim,
            s.block_size,
            s.max_blocks_per_seq,
        ]
        .map(|x| x as i32);
        let mut b = func.builder();
        b.arg(&out);
        b.arg(&q);
        b.arg(&k);
        b.arg(&v);
        b.arg(&tables);
        b.arg(&lens);
        b.arg(&self.scale);
        for x in &ints {
            b.arg(x);
        }
        // SAFETY: the argument list matches the kernel's signature; every
        // index the kernel reads is within the checked shapes (block ids are
        // the caller's: they must be below num_blocks).
        unsafe { b.launch(cfg) }.w()?;
        Ok(out)
    }
}

impl CustomOp3 for FusedDecode {
    fn name(&self) -> &'static str {
        "paged-attention-decode"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the fused paged attention is CUDA only: use paged_attention_decode_portable")
    }

    fn cuda_fwd(
        &self,
        q: &CudaStorage,
        q_l: &Layout,
        k: &CudaStorage,
        k_l: &Layout,
        v: &CudaStorage,
        v_l: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        use CudaStorageSlice as S;
        let s = &self.shape;
        let elems = ELEMS.iter().find(|&&e| s.head_dim <= 32 * e).copied();
        let Some(elems) = elems else {
            candle_core::bail!("paged attention: head_dim {} over 256", s.head_dim)
        };
        let name = format!(
            "paged_attention_decode_{}_{}_{elems}",
            type_name(q)?,
            type_name(k)?
        );
        let dev = q.device();
        let slice = with_u32(&self.block_tables, "block_tables", |tables| {
            with_u32(&self.context_lens, "context_lens", |lens| {
                macro_rules! go {
                    ($qs:expr, $ks:expr, $vs:expr) => {
                        self.launch(
                            dev,
                            &name,
                            view($qs, q_l, "q")?,
                            view($ks, k_l, "k_cache")?,
                            view($vs, v_l, "v_cache")?,
                            tables,
                            lens,
                        )
                    };
                }
                macro_rules! by_cache {
                    ($qs:expr, $wrap:path) => {
                        match (&k.slice, &v.slice) {
                            (S::F32(ks), S::F32(vs)) => go!($qs, ks, vs).map($wrap),
                            (S::F16(ks), S::F16(vs)) => go!($qs, ks, vs).map($wrap),
                            (S::BF16(ks), S::BF16(vs)) => go!($qs, ks, vs).map($wrap),
                            _ => {
                                candle_core::bail!("paged attention: unsupported cache dtype {:?}", k.dtype())
                            }
                        }
                    };
                }
                match &q.slice {
                    S::F32(qs) => by_cache!(qs, S::F32),
                    S::F16(qs) => by_cache!(qs, S::F16),
                    S::BF16(qs) => by_cache!(qs, S::BF16),
                    _ => candle_core::bail!("paged attention: unsupported q dtype {:?}", q.dtype()),
                }
            })
        })?;
        let out = CudaStorage {
            slice,
            device: dev.clone(),
        };
        Ok((out, Shape::from((s.num_seqs, s.n_heads, s.head_dim))))
    }
}
