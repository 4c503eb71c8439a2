//! x86 dots of the K-quant super-blocks of 256 (`layout.rs`): eight
//! sub-blocks of 32, each against one activation block.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::{lane_byte_i8, lane_byte_u8, run_at, scale_into, unsigned_sub_block, IntDot, Panel, Rows};
use crate::quant::panel::PANEL;
use crate::quant::BLOCK;

/// Sub-blocks of 32 per super-block.
const SUBS: usize = 8;

/// Q4_K (`FIVE` false) and Q5_K: per sub-block, the integer dot of its
/// unsigned values, times `d * sc` (lane-wise: each row's six-bit scale
/// widened from its byte), then `-dmin * m` times the exact `d_x * sum(x)`.
#[inline(always)]
pub(super) unsafe fn q4k_q5k<I: IntDot, const N: usize, const FIVE: bool>(
    w: &Panel<'_>,
    x: &Rows<'_, N>,
) -> [__m256; N] {
    // Runs: 32 of nibbles, (Q5_K) 8 of fifth bits, 2 of scales, 2 of minimums.
    let scale_run = if FIVE { 40 } else { 32 };
    let runs = scale_run + 4;
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..w.d.len() / PANEL {
        let base = w.qs.as_ptr().add(b * runs * 32);
        let wd = _mm256_loadu_ps(w.d.as_ptr().add(b * PANEL));
        let wm = _mm256_loadu_ps(w.m.as_ptr().add(b * PANEL));
        let scales = [run_at(base, scale_run), run_at(base, scale_run + 1)];
        let mins = [run_at(base, scale_run + 2), run_at(base, scale_run + 3)];
        for s in 0..SUBS {
            let sc = _mm256_cvtepi32_ps(lane_byte_u8(scales[s / 4], s % 4));
            let mn = _mm256_cvtepi32_ps(lane_byte_u8(mins[s / 4], s % 4));
            let (dsc, wms) = (_mm256_mul_ps(wd, sc), _mm256_mul_ps(wm, mn));
            let xb = b * SUBS + s;
            let qh = if FIVE { base.add((32 + s) * 32) } else { base };
            let isum = unsigned_sub_block::<I, N, FIVE>(base.add(4 * s * 32), qh, x, xb);
            for r in 0..N {
                let xd = x.d(r, xb);
                acc[r] = scale_into(isum[r], dsc, xd, acc[r]);
                let xsum = xd * x.sum(r, xb) as f32;
                acc[r] = _mm256_fmadd_ps(wms, _mm256_set1_ps(xsum), acc[r]);
            }
        }
    }
    acc
}

/// Q6_K: per group of 16 columns, `q - 32` as signed bytes (|w| unsigned,
/// its sign moved onto the activations as for Q8_0), summed in 16 bits
/// (|q - 32| <= 32 times |x| <= 127, 16 columns: below 2^15), widened by
/// `IntDot::scaled` against the group's signed scale: one exact integer
/// times `d`.
/// The two groups of a sub-block go one after the other, so only one set
/// of 16-bit sums is live beside the float accumulators (two sets spilled
/// registers).
#[inline(always)]
pub(super) unsafe fn q6k<I: IntDot, const N: usize>(w: &Panel<'_>, x: &Rows<'_, N>) -> [__m256; N] {
    // Runs: 32 of nibbles, 16 of high bits (two per sub-block), 4 of scales.
    let runs = 52;
    let low = _mm256_set1_epi8(0x0F);
    let bits45 = _mm256_set1_epi8(0x30);
    let offset = _mm256_set1_epi8(32);
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..w.d.len() / PANEL {
        let base = w.qs.as_ptr().add(b * runs * 32);
        let wd = _mm256_loadu_ps(w.d.as_ptr().add(b * PANEL));
        for s in 0..SUBS {
            let xb = b * SUBS + s;
            for h in 0..2 {
                let high = run_at(base, 32 + 2 * s + h);
                let mut s16 = [_mm256_setzero_si256(); N];
                for k in 0..4 {
                    let raw = run_at(base, 4 * s + k);
                    let nibbles = if h == 0 { raw } else { _mm256_srli_epi16(raw, 4) };
                    let top = _mm256_and_si256(high_bits_at_4(high, k), bits45);
                    let q = _mm256_or_si256(_mm256_and_si256(nibbles, low), top);
                    let wq = _mm256_sub_epi8(q, offset);
                    let wabs = _mm256_abs_epi8(wq);
                    for (r, s16) in s16.iter_mut().enumerate() {
                        let xs = _mm256_sign_epi8(x.q4(r, xb * BLOCK + 16 * h + 4 * k), wq);
                        *s16 = I::short(*s16, wabs, xs);
                    }
                }
                let sc = group_scale(base, 2 * s + h);
                for r in 0..N {
                    let isum = I::scaled(s16[r], sc);
                    acc[r] = scale_into(isum, wd, x.d(r, xb), acc[r]);
                }
            }
        }
    }
    acc
}

/// Q6_K group `g`'s signed scale (byte `g % 4` of run `48 + g / 4`), one
/// per lane.
#[inline(always)]
unsafe fn group_scale(base: *const u8, g: usize) -> __m256i {
    lane_byte_i8(run_at(base, 48 + g / 4), g % 4)
}

/// Q6_K run `k`'s high bits (bits `2k..2k+2` of each byte) moved to bits
/// 4..6, other bits left for the caller's mask. 16-bit shifts of at most
/// four never carry a byte's bits into the kept ones of its neighbour.
#[inline(always)]
unsafe fn high_bits_at_4(high: __m256i, k: usize) -> __m256i {
    match k {
        0 => _mm256_slli_epi16(high, 4),
        1 => _mm256_slli_epi16(high, 2),
        2 => high,
        _ => _mm256_srli_epi16(high, 2),
    }
}
