//! Portable version of the panel-times-batch dot, lane by lane: the
//! reference whose operations, in this order, the AVX2 kernel (`x86.rs`)
//! repeats to give the same bits.

use super::Panel;
use crate::quant::panel::{self, PANEL};
use crate::quant::{QMatrix, QuantFormat, QuantizedRows, BLOCK};

/// `outs[i][jj] = dot(weight row first + jj, activation row i)`, one panel
/// and one activation row at a time.
pub(super) fn tile(w: &QMatrix, first: usize, acts: &QuantizedRows, outs: &mut [&mut [f32]]) {
    for (i, out) in outs.iter_mut().enumerate() {
        for (p, lanes) in out.chunks_mut(PANEL).enumerate() {
            let sums = panel_dot(w.format, &w.panel(first / PANEL + p), acts.row(i));
            lanes.copy_from_slice(&sums[..lanes.len()]);
        }
    }
}

/// The reference, lane by lane: each block's integer dot product, then
/// `acc = sum * (d_w * d_x) + acc` and, for Q4_1, `acc = m_w * s_x + acc`,
/// both fused multiply-adds. The SIMD kernels do exactly these operations in
/// this order, so they give the same bits.
fn panel_dot(format: QuantFormat, w: &Panel<'_>, (xq, xd, xs): (&[i8], &[f32], &[f32])) -> [f32; PANEL] {
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
