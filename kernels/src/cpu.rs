//! The CPU's SIMD features, detected once per process: the only place the
//! crate asks the CPU what it runs. Every kernel's dispatch reads
//! [`features`], so one process always takes the same path for a call and a
//! result never depends on which call (or batch) computed it.
// Only the x86 kernels read it so far.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use std::sync::OnceLock;

/// What the x86 kernels need (all false on other architectures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Features {
    /// AVX2 and FMA: every x86 kernel (`vector`, `quant`, `attention`).
    pub avx2_fma: bool,
    /// F16C: the f16 cache widening of the attention kernel.
    pub f16c: bool,
    /// AVX-512F: the index's dot product (16 lanes).
    pub avx512f: bool,
    /// AVX-512 VNNI with VL: the quantized matmul's `vpdpbusd` on 256-bit
    /// registers (one instruction for AVX2's `maddubs` + `madd` + `add`).
    pub avx512_vnni: bool,
}

/// This CPU's features, detected on the first call.
pub(crate) fn features() -> Features {
    static FEATURES: OnceLock<Features> = OnceLock::new();
    *FEATURES.get_or_init(detect)
}

fn detect() -> Features {
    #[cfg(target_arch = "x86_64")]
    {
        Features {
            avx2_fma: is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            f16c: is_x86_feature_detected!("f16c"),
            avx512f: is_x86_feature_detected!("avx512f"),
            avx512_vnni: is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    Features::default()
}
