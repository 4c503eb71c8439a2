//! Portable version of the panel-times-batch dot, lane by lane: the
//! reference whose operations, in this order, the AVX2 kernel (`x86/`)
//! repeats to give the same bits.

use super::Panel;
use crate::quant::activations::ActRow;
use crate::quant::panel::{self, PANEL};
use crate::quant::{layout, QMatrix, QuantFormat, QuantizedRows, BLOCK};

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

/// The reference, lane by lane. Per sub-block of 32 columns (one
/// activation block): an exact integer dot product `isum` and the weight
/// scale `wd` it stands for (Q6_K: one per group of 16), then
/// `acc = isum * (wd * d_x) + acc` and, where
/// the format has minimums, `acc = wm * xm + acc`, all fused multiply-adds.
/// The SIMD kernels do exactly these operations in this order, so they
/// give the same bits.
fn panel_dot(format: QuantFormat, w: &Panel<'_>, x: ActRow<'_>) -> [f32; PANEL] {
    let subs = format.block_len() / BLOCK;
    let nb = w.d.len() / PANEL;
    let mut acc = [0f32; PANEL];
    for b in 0..nb {
        for (r, a) in acc.iter_mut().enumerate() {
            let byte = |o| panel::byte(format, w.qs, b, r, o);
            let at = b * PANEL + r;
            for s in 0..subs {
                let xb = b * subs + s;
                let xq = &x.q[xb * BLOCK..(xb + 1) * BLOCK];
                let q = |c: usize| layout::value(format, byte, s * BLOCK + c);
                // Sum of (q[c] - offset) * x[c] over columns `cs`.
                let dot = |cs: std::ops::Range<usize>, offset: i32| -> i32 {
                    cs.map(|c| (q(c) - offset) * xq[c] as i32).sum()
                };
                // One or two (Q6_K: a group of 16 each) integer sums, each
                // with the weight scale it stands for.
                let whole = |isum: i32, wd: f32| ([(isum, wd), (0, 0.0)], 1);
                let (parts, n) = match format {
                    QuantFormat::Q8_0 | QuantFormat::Q4_1 => whole(dot(0..BLOCK, 0), w.d[at]),
                    QuantFormat::Q5_0 => whole(dot(0..BLOCK, 16), w.d[at]),
                    QuantFormat::Q4K | QuantFormat::Q5K => {
                        whole(dot(0..BLOCK, 0), w.d[at] * layout::scale(format, byte, s) as f32)
                    }
                    QuantFormat::Q6K => {
                        let group =
                            |h: usize| layout::scale(format, byte, 2 * s + h) * dot(16 * h..16 * h + 16, 32);
                        ([(group(0), w.d[at]), (group(1), w.d[at])], 2)
                    }
                };
                for &(isum, wd) in &parts[..n] {
                    *a = (isum as f32).mul_add(wd * x.d[xb], *a);
                }
                match format {
                    QuantFormat::Q4_1 => *a = w.m[at].mul_add(x.s[xb], *a),
                    QuantFormat::Q4K | QuantFormat::Q5K => {
                        let wm = w.m[at] * layout::min(format, byte, s) as f32;
                        *a = wm.mul_add(x.d[xb] * x.sum[xb] as f32, *a);
                    }
                    _ => {}
                }
            }
        }
    }
    acc
}
