//! AVX2 version of the panel-times-batch dot (`panel.rs` layout).
//!
//! Activation rows go in groups of up to four: each panel block is loaded
//! (and, for Q4_1, unpacked) once per group and multiplied with every row of
//! it, each row in its own accumulators. The eight lanes of a register are
//! the panel's eight weight rows, so a block's integer sums come out one per
//! lane and its scales apply lane-wise. A row's sequence of instructions is
//! the same whatever group it is in (the group size is a const parameter;
//! rows never mix) and the same as `portable.rs`'s arithmetic, so its
//! result is too.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::Panel;
use crate::quant::panel::PANEL;
use crate::quant::{QMatrix, QuantFormat, QuantizedRows, BLOCK};

/// Rows of the batch that share one pass over a panel.
const GROUP: usize = 4;

type Row<'a> = (&'a [i8], &'a [f32], &'a [f32]);

pub(super) fn tile(w: &QMatrix, first: usize, acts: &QuantizedRows, outs: &mut [&mut [f32]]) {
    let m = outs.len();
    let mut i = 0;
    while i < m {
        let n = (m - i).min(GROUP);
        let group = &mut outs[i..i + n];
        // SAFETY: `select` chose this kernel only after detecting AVX2 and
        // FMA; `group_tile` checks every slice length it reads through.
        unsafe {
            match n {
                4 => group_tile::<4>(w, first, acts, i, group),
                3 => group_tile::<3>(w, first, acts, i, group),
                2 => group_tile::<2>(w, first, acts, i, group),
                _ => group_tile::<1>(w, first, acts, i, group),
            }
        }
        i += n;
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn group_tile<const N: usize>(
    w: &QMatrix,
    first: usize,
    acts: &QuantizedRows,
    i0: usize,
    outs: &mut [&mut [f32]],
) {
    let x: [Row<'_>; N] = std::array::from_fn(|r| acts.row(i0 + r));
    let nb = w.cols() / BLOCK;
    assert!(x
        .iter()
        .all(|r| r.0.len() == nb * BLOCK && r.1.len() == nb && r.2.len() == nb));
    let len = outs[0].len();
    for (p, start) in (0..len).step_by(PANEL).enumerate() {
        let panel = w.panel(first / PANEL + p);
        assert!(panel.qs.len() == nb * PANEL * w.format().qs_bytes() && panel.d.len() == nb * PANEL);
        let sums = match w.format() {
            QuantFormat::Q4_1 => {
                assert!(panel.m.len() == nb * PANEL);
                q4_1::<N>(&panel, &x)
            }
            QuantFormat::Q8_0 => q8_0::<N>(&panel, &x),
        };
        let lanes = (len - start).min(PANEL);
        for r in 0..N {
            let mut v = [0f32; PANEL];
            _mm256_storeu_ps(v.as_mut_ptr(), sums[r]);
            outs[r][start..start + lanes].copy_from_slice(&v[..lanes]);
        }
    }
}

/// Four activation bytes from `at`, in every 32-bit lane.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn broadcast4(xq: &[i8], at: usize) -> __m256i {
    _mm256_set1_epi32(std::ptr::read_unaligned(xq.as_ptr().add(at) as *const i32))
}

/// `acc = isum * (d_w * d_x) + acc`, lane-wise.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn scale_into(isum: __m256i, wd: __m256, xd: f32, acc: __m256) -> __m256 {
    _mm256_fmadd_ps(
        _mm256_cvtepi32_ps(isum),
        _mm256_mul_ps(wd, _mm256_set1_ps(xd)),
        acc,
    )
}

/// Q4_1: a run of 32 bytes is columns `4k..4k+4` (low nibbles) and
/// `16+4k..16+4k+4` (high nibbles) of the eight rows. Nibbles (0..15) times
/// activations (|x| <= 127) summed over the block's 32 columns stay below
/// 2^15, so the pairs from `maddubs` add up in 16 bits before one widening.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn q4_1<const N: usize>(w: &Panel<'_>, x: &[Row<'_>; N]) -> [__m256; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    let low = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    for b in 0..w.d.len() / PANEL {
        let base = w.qs.as_ptr().add(b * PANEL * 16);
        let mut s16 = [_mm256_setzero_si256(); N];
        for k in 0..4 {
            let raw = _mm256_loadu_si256(base.add(k * 32) as *const __m256i);
            let lo = _mm256_and_si256(raw, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
            for r in 0..N {
                let xq = x[r].0;
                let at = b * BLOCK + 4 * k;
                s16[r] = _mm256_add_epi16(s16[r], _mm256_maddubs_epi16(lo, broadcast4(xq, at)));
                s16[r] = _mm256_add_epi16(s16[r], _mm256_maddubs_epi16(hi, broadcast4(xq, at + 16)));
            }
        }
        let wd = _mm256_loadu_ps(w.d.as_ptr().add(b * PANEL));
        let wm = _mm256_loadu_ps(w.m.as_ptr().add(b * PANEL));
        for r in 0..N {
            let (_, xd, xs) = x[r];
            let isum = _mm256_madd_epi16(s16[r], ones);
            acc[r] = scale_into(isum, wd, *xd.get_unchecked(b), acc[r]);
            acc[r] = _mm256_fmadd_ps(wm, _mm256_set1_ps(*xs.get_unchecked(b)), acc[r]);
        }
    }
    acc
}

/// Q8_0: a run of 32 bytes is columns `4k..4k+4` of the eight rows; |w| as
/// unsigned bytes, the sign moved onto the activations.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn q8_0<const N: usize>(w: &Panel<'_>, x: &[Row<'_>; N]) -> [__m256; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    let ones = _mm256_set1_epi16(1);
    for b in 0..w.d.len() / PANEL {
        let base = w.qs.as_ptr().add(b * PANEL * BLOCK);
        let mut s32 = [_mm256_setzero_si256(); N];
        for k in 0..8 {
            let wq = _mm256_loadu_si256(base.add(k * 32) as *const __m256i);
            let wabs = _mm256_sign_epi8(wq, wq);
            for r in 0..N {
                let xs = _mm256_sign_epi8(broadcast4(x[r].0, b * BLOCK + 4 * k), wq);
                let pairs = _mm256_maddubs_epi16(wabs, xs);
                s32[r] = _mm256_add_epi32(s32[r], _mm256_madd_epi16(pairs, ones));
            }
        }
        let wd = _mm256_loadu_ps(w.d.as_ptr().add(b * PANEL));
        for r in 0..N {
            acc[r] = scale_into(s32[r], wd, *x[r].1.get_unchecked(b), acc[r]);
        }
    }
    acc
}
