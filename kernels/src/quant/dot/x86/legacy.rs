//! x86 dots of the blocks of 32: Q8_0, Q4_1, Q5_0.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::{scale_into, unsigned_sub_block, IntDot, Panel, Rows};
use crate::quant::panel::PANEL;
use crate::quant::BLOCK;

/// Q4_1: a run of 32 bytes is columns `4k..4k+4` (low nibbles) and
/// `16+4k..16+4k+4` (high nibbles) of the eight rows; then the minimum
/// times the block's `d * sum(x)`.
#[inline(always)]
pub(super) unsafe fn q4_1<I: IntDot, const N: usize>(w: &Panel<'_>, x: &Rows<'_, N>) -> [__m256; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..w.d.len() / PANEL {
        let base = w.qs.as_ptr().add(b * PANEL * 16);
        let isum = unsigned_sub_block::<I, N, false>(base, base, x, b);
        let wd = _mm256_loadu_ps(w.d.as_ptr().add(b * PANEL));
        let wm = _mm256_loadu_ps(w.m.as_ptr().add(b * PANEL));
        for r in 0..N {
            acc[r] = scale_into(isum[r], wd, x.d(r, b), acc[r]);
            acc[r] = _mm256_fmadd_ps(wm, _mm256_set1_ps(x.s(r, b)), acc[r]);
        }
    }
    acc
}

/// Q5_0: Q4_1's nibbles with a run of fifth bits after them; the offset
/// of 16 comes off the integer sum as `16 * sum(x)`.
#[inline(always)]
pub(super) unsafe fn q5_0<I: IntDot, const N: usize>(w: &Panel<'_>, x: &Rows<'_, N>) -> [__m256; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..w.d.len() / PANEL {
        let base = w.qs.as_ptr().add(b * PANEL * 20);
        let isum = unsigned_sub_block::<I, N, true>(base, base.add(4 * 32), x, b);
        let wd = _mm256_loadu_ps(w.d.as_ptr().add(b * PANEL));
        for r in 0..N {
            let offset = _mm256_set1_epi32(16 * x.sum(r, b));
            let isum = _mm256_sub_epi32(isum[r], offset);
            acc[r] = scale_into(isum, wd, x.d(r, b), acc[r]);
        }
    }
    acc
}

/// Q8_0: a run of 32 bytes is columns `4k..4k+4` of the eight rows.
/// Where 32-bit products sum without saturating (`IntDot::WIDE_PRODUCTS`,
/// VNNI) the weights go in as unsigned `w + 128` and `128 * sum(x)` comes
/// off per block: one instruction per row and run. Otherwise (AVX2's 16-bit
/// pairs would saturate) |w| goes in, its sign moved onto the activations.
#[inline(always)]
pub(super) unsafe fn q8_0<I: IntDot, const N: usize>(w: &Panel<'_>, x: &Rows<'_, N>) -> [__m256; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    let flip = _mm256_set1_epi8(i8::MIN);
    for b in 0..w.d.len() / PANEL {
        let base = w.qs.as_ptr().add(b * PANEL * BLOCK);
        let mut s32 = [_mm256_setzero_si256(); N];
        for k in 0..8 {
            let wq = _mm256_loadu_si256(base.add(k * 32) as *const __m256i);
            if I::WIDE_PRODUCTS {
                let wu = _mm256_xor_si256(wq, flip);
                for (r, s32) in s32.iter_mut().enumerate() {
                    *s32 = I::single32(*s32, wu, x.q4(r, b * BLOCK + 4 * k));
                }
            } else {
                let wabs = _mm256_sign_epi8(wq, wq);
                for (r, s32) in s32.iter_mut().enumerate() {
                    let xs = _mm256_sign_epi8(x.q4(r, b * BLOCK + 4 * k), wq);
                    *s32 = I::single32(*s32, wabs, xs);
                }
            }
        }
        let wd = _mm256_loadu_ps(w.d.as_ptr().add(b * PANEL));
        for r in 0..N {
            let isum = if I::WIDE_PRODUCTS {
                _mm256_sub_epi32(s32[r], _mm256_set1_epi32(128 * x.sum(r, b)))
            } else {
                s32[r]
            };
            acc[r] = scale_into(isum, wd, x.d(r, b), acc[r]);
        }
    }
    acc
}
