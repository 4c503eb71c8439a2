//! Weight rows times every row of a quantized batch: the kernel choice
//! (made once per process, from the CPU's features) and the portable version.

use super::{QMatrix, QuantFormat, QuantizedRows, BLOCK};

/// One weight row's blocks.
pub(super) struct WeightRow<'a> {
    pub qs: &'a [u8],
    pub d: &'a [f32],
    /// Empty unless Q4_1.
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
    /// of weight rows (as long as each `outs[i]`) against every row of `acts`.
    pub fn tile(self, w: &QMatrix, first: usize, acts: &QuantizedRows, outs: &mut [&mut [f32]]) {
        match self {
            Self::Portable => {
                for (i, out) in outs.iter_mut().enumerate() {
                    for (jj, o) in out.iter_mut().enumerate() {
                        *o = portable(w.format, &w.weight_row(first + jj), acts.row(i));
                    }
                }
            }
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => super::dot_x86::tile(w, first, acts, outs),
        }
    }
}

/// The reference: integer dot per block, then `d_w * d_x * sum + m_w * s_x`.
pub(super) fn portable(format: QuantFormat, w: &WeightRow<'_>, (xq, xd, xs): (&[i8], &[f32], &[f32])) -> f32 {
    let mut sum = 0f32;
    for b in 0..w.d.len() {
        let x = &xq[b * BLOCK..(b + 1) * BLOCK];
        let sumi: i32 = match format {
            QuantFormat::Q8_0 => w.qs[b * BLOCK..(b + 1) * BLOCK]
                .iter()
                .zip(x)
                .map(|(&a, &b)| a as i8 as i32 * b as i32)
                .sum(),
            QuantFormat::Q4_1 => w.qs[b * 16..(b + 1) * 16]
                .iter()
                .enumerate()
                .map(|(j, &q)| (q & 0x0F) as i32 * x[j] as i32 + (q >> 4) as i32 * x[j + 16] as i32)
                .sum(),
        };
        sum += sumi as f32 * w.d[b] * xd[b];
        if format == QuantFormat::Q4_1 {
            sum += w.m[b] * xs[b];
        }
    }
    sum
}
