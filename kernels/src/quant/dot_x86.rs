//! AVX2 version of the weight-rows-times-batch dot.
//!
//! Activation rows go in groups of up to four: each weight block is loaded
//! and unpacked once per group and multiplied with every row of it, each row
//! in its own accumulator. A row's sequence of instructions is the same
//! whatever group it is in (the group size is a const parameter; rows never
//! mix), so its result is too.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::dot::WeightRow;
use super::{QMatrix, QuantFormat, QuantizedRows, BLOCK};

/// Rows of the batch that share one pass over a weight row.
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
    for jj in 0..outs[0].len() {
        let row = w.weight_row(first + jj);
        let nb = row.d.len();
        assert!(x
            .iter()
            .all(|r| r.0.len() == nb * BLOCK && r.1.len() == nb && r.2.len() == nb));
        let sums = match w.format() {
            QuantFormat::Q4_1 => {
                assert!(row.qs.len() == nb * 16 && row.m.len() == nb);
                q4_1::<N>(&row, &x)
            }
            QuantFormat::Q8_0 => {
                assert!(row.qs.len() == nb * BLOCK);
                q8_0::<N>(&row, &x)
            }
        };
        for r in 0..N {
            outs[r][jj] = sums[r];
        }
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// `u8 x i8` products summed in fours to eight i32 lanes, as f32.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_madd_epi16(
        _mm256_maddubs_epi16(u, s),
        _mm256_set1_epi16(1),
    ))
}

/// `sum a[k] * b[k]`, eight lanes at a time then the tail.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = _mm256_setzero_ps();
    let mut k = 0;
    while k + 8 <= n {
        acc = _mm256_fmadd_ps(
            _mm256_loadu_ps(a.as_ptr().add(k)),
            _mm256_loadu_ps(b.as_ptr().add(k)),
            acc,
        );
        k += 8;
    }
    let mut sum = hsum(acc);
    while k < n {
        sum += a[k] * b[k];
        k += 1;
    }
    sum
}

/// Q4_1 weights: nibbles times activations, plus each block's minimum times
/// the activation block's scaled sum.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn q4_1<const N: usize>(w: &WeightRow<'_>, x: &[Row<'_>; N]) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    let low = _mm256_set1_epi8(0x0F);
    for b in 0..w.d.len() {
        // Bytes 0..15: low nibbles (values 0..15); 16..31: high nibbles.
        let raw = _mm_loadu_si128(w.qs.as_ptr().add(b * 16) as *const __m128i);
        let wq = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low);
        let wd = *w.d.get_unchecked(b);
        for r in 0..N {
            let (xq, xd, _) = x[r];
            let v = _mm256_loadu_si256(xq.as_ptr().add(b * BLOCK) as *const __m256i);
            acc[r] = _mm256_fmadd_ps(
                dot_u8_i8(wq, v),
                _mm256_set1_ps(wd * *xd.get_unchecked(b)),
                acc[r],
            );
        }
    }
    std::array::from_fn(|r| hsum(acc[r]) + dot_f32(w.m, x[r].2))
}

/// Q8_0 weights: |w| as unsigned bytes, the sign moved onto the activations.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn q8_0<const N: usize>(w: &WeightRow<'_>, x: &[Row<'_>; N]) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..w.d.len() {
        let wq = _mm256_loadu_si256(w.qs.as_ptr().add(b * BLOCK) as *const __m256i);
        let wabs = _mm256_sign_epi8(wq, wq);
        let wd = *w.d.get_unchecked(b);
        for r in 0..N {
            let (xq, xd, _) = x[r];
            let v = _mm256_loadu_si256(xq.as_ptr().add(b * BLOCK) as *const __m256i);
            let p = dot_u8_i8(wabs, _mm256_sign_epi8(v, wq));
            acc[r] = _mm256_fmadd_ps(p, _mm256_set1_ps(wd * *xd.get_unchecked(b)), acc[r]);
        }
    }
    std::array::from_fn(|r| hsum(acc[r]))
}

/// AVX2 version of the activation block quantizer (`activations.rs`).
pub(super) fn quantize_block(src: &[f32], dst: &mut [i8]) -> (f32, i32) {
    assert!(src.len() == BLOCK && dst.len() == BLOCK);
    // SAFETY: only called once `select` found AVX2; lengths checked above.
    unsafe { quantize_block_avx2(src, dst) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_block_avx2(src: &[f32], dst: &mut [i8]) -> (f32, i32) {
    let p = src.as_ptr();
    let v = [
        _mm256_loadu_ps(p),
        _mm256_loadu_ps(p.add(8)),
        _mm256_loadu_ps(p.add(16)),
        _mm256_loadu_ps(p.add(24)),
    ];
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let m = _mm256_max_ps(
        _mm256_max_ps(_mm256_and_ps(v[0], abs), _mm256_and_ps(v[1], abs)),
        _mm256_max_ps(_mm256_and_ps(v[2], abs), _mm256_and_ps(v[3], abs)),
    );
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
    let scale = amax / 127.0;
    let inv = _mm256_set1_ps(if scale != 0.0 { 1.0 / scale } else { 0.0 });
    // Round to nearest, ties to even (the default rounding mode).
    let q = v.map(|x| _mm256_cvtps_epi32(_mm256_mul_ps(x, inv)));
    let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    let sum = _mm_cvtsi128_si32(s);
    // Pack 32 x i32 to 32 x i8; the packs interleave 128-bit lanes, the
    // permutation restores the order.
    let lo = _mm256_packs_epi32(q[0], q[1]);
    let hi = _mm256_packs_epi32(q[2], q[3]);
    let bytes = _mm256_packs_epi16(lo, hi);
    let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(dst.as_mut_ptr() as *mut __m256i, bytes);
    (scale, sum)
}
