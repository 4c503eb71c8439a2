//! Portable version of one head group's attention, one token at a time: the
//! reference for `x86.rs`, and the path on CPUs without AVX2, FMA and F16C
//! or for head sizes the x86 kernel is not compiled for.

use super::{HeadGroup, Scratch};
use crate::vector::portable::dot;

/// `outs[i]` receives the group's output for the tile's token `i`.
pub(super) fn run(job: &HeadGroup<'_>, scratch: &mut Scratch, outs: &mut [&mut [f32]]) {
    let (shape, hd, group) = (job.shape, job.shape.head_dim, job.group);
    let g = job.kv_head;
    let Scratch { scores, row, .. } = scratch;
    for ((i, tok), out) in job.tokens.iter().enumerate().zip(outs.iter_mut()) {
        let n = tok.pos + 1;
        scores.clear();
        scores.resize(group * n, 0.0);
        // Scores, head-major: scores[h * n + p].
        for p in 0..n {
            let at = shape.row_offset(tok.blocks, p) + g * hd;
            let k = job.k_cache.row(at, hd, row);
            for h in 0..group {
                scores[h * n + p] = dot(job.query(i, h), k) * job.scale;
            }
        }
        for h in 0..group {
            softmax_in_place(&mut scores[h * n..(h + 1) * n]);
        }
        out.fill(0.0);
        for p in 0..n {
            let at = shape.row_offset(tok.blocks, p) + g * hd;
            let v = job.v_cache.row(at, hd, row);
            for h in 0..group {
                axpy(scores[h * n + p], v, &mut out[h * hd..(h + 1) * hd]);
            }
        }
    }
}

/// `y += a * x`.
#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[inline(always)]
fn softmax_in_place(xs: &mut [f32]) {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for x in xs.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    let inv = 1.0 / sum;
    xs.iter_mut().for_each(|x| *x *= inv);
}
