//! AVX2 version of the activation block quantizer (`portable.rs`), giving
//! the same bits.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use crate::quant::BLOCK;

/// [`super::portable::quantize_block`] with AVX2.
pub(super) fn quantize_block(src: &[f32], dst: &mut [i8]) -> (f32, i32) {
    assert!(src.len() == BLOCK && dst.len() == BLOCK);
    // SAFETY: only called once `dot::select` found AVX2 and FMA; lengths
    // checked above.
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
