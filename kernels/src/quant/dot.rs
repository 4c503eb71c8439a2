//! Weight rows times every row of a quantized batch: the kernel choice
//! (made once per process, from the CPU's features) and the portable version.

use super::panel::{self, PANEL};
use super::{QMatrix, QuantFormat, QuantizedRows, BLOCK};

/// One panel's blocks (eight weight rows, `panel.rs` layout).
pub(super) struct Panel<'a> {
    pub qs: &'a [u8],
    /// `[block][8]` scales.
    pub d: &'a [f32],
    /// `[block][8]` minimums; empty unless Q4_1.
    pub m: &'a [f32],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

/// The fastest kernel this CPU runs. Every call in a process gets the same
/// one, so results never depend on which rows share a call.
pub(super) fn select() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static CHOICE: OnceLock<Kernel> = OnceLock::new();
        *CHOICE.get_or_init(|| {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            let forced = std::env::var("RAGD_QUANT_KERNEL").is_ok_and(|v| v == "portable");
            if avx2 && !forced {
                Kernel::Avx2
            } else {
                Kernel::Portable
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    Kernel::Portable
}

impl Kernel {
    /// `outs[i][jj] = dot(weight row first + jj, activation row i)`: a tile
    /// of weight rows (as long as each `outs[i]`; `first` starts a panel)
    /// against every row of `acts`.
    pub fn tile(self, w: &QMatrix, first: usize, acts: &QuantizedRows, outs: &mut [&mut [f32]]) {
        debug_assert_eq!(first % PANEL, 0);
        match self {
            Self::Portable => {
                for (i, out) in outs.iter_mut().enumerate() {
                    for (p, lanes) in out.chunks_mut(PANEL).enumerate() {
                        let sums = portable(w.format, &w.panel(first / PANEL + p), acts.row(i));
                        lanes.copy_from_slice(&sums[..lanes.len()]);
                    }
                }
            }
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => super::dot_x86::tile(w, first, acts, outs),
        }
    }
}

/// The reference, lane by lane: each block's integer dot product, then
/// `acc = sum * (d_w * d_x) + acc` and, for Q4_1, `acc = m_w * s_x + acc`,
/// both fused multiply-adds. The SIMD kernels do exactly these operations in
/// this order, so they give the same bits.
pub(super) fn portable(
    format: QuantFormat,
    w: &Panel<'_>,
    (xq, xd, xs): (&[i8], &[f32], &[f32]),
) -> [f32; PANEL] {
    let nb = xd.len();
    let mut acc = [0f32; PANEL];
    for b in 0..nb {
        let x = &xq[b * BLOCK..(b + 1) * BLOCK];
        for (r, a) in acc.iter_mut().enumerate() {
            let sum: i32 = (0..BLOCK)
                .map(|c| panel::value(format, nb, w.qs, r, b, c) * x[c] as i32)
                .sum();
            let at = b * PANEL + r;
            *a = (sum as f32).mul_add(w.d[at] * xd[b], *a);
            if format == QuantFormat::Q4_1 {
                *a = w.m[at].mul_add(xs[b], *a);
            }
        }
    }
    acc
}
