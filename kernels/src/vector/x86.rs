//! AVX2 + FMA versions of the vector primitives, and the eight-lane `exp`
//! that they and attention's softmax use.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

/// Four 8-lane FMA accumulators (32 values per round), then the tail.
///
/// # Safety
/// Needs AVX2 and FMA; `a` and `b` of equal length.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, s) in acc.iter_mut().enumerate() {
            let at = i + 8 * j;
            *s = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(at)), _mm256_loadu_ps(pb.add(at)), *s);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]);
        i += 8;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    let mut sum = _mm_cvtss_f32(s);
    while i < n {
        sum += a[i] * b[i];
        i += 1;
    }
    sum
}

/// Four 16-lane FMA accumulators (64 values per round), then 16 at a
/// time, then the tail.
///
/// # Safety
/// Needs AVX-512F; `a` and `b` of equal length.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 64 <= n {
        for (j, s) in acc.iter_mut().enumerate() {
            let at = i + 16 * j;
            *s = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(at)), _mm512_loadu_ps(pb.add(at)), *s);
        }
        i += 64;
    }
    while i + 16 <= n {
        acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc[0]);
        i += 16;
    }
    let v = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let mut sum = _mm512_reduce_add_ps(v);
    while i < n {
        sum += a[i] * b[i];
        i += 1;
    }
    sum
}

/// Prefetches the first two cache lines of `v` (SSE, part of every
/// x86-64 CPU).
#[inline]
pub(super) fn prefetch(v: &[f32]) {
    let p = v.as_ptr().cast::<i8>();
    // SAFETY: a prefetch is a hint and never faults; `p.wrapping_add(64)`
    // is only an address, never read here.
    unsafe {
        _mm_prefetch::<_MM_HINT_T0>(p);
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
    }
}

/// `out[i] = silu(g[i]) * u[i]`, eight lanes at a time through [`exp8`],
/// the tail with libm's `exp` as in the portable version.
///
/// # Safety
/// Needs AVX2 and FMA; all three slices of equal length.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) {
    let n = g.len();
    let one = _mm256_set1_ps(1.0);
    let mut i = 0;
    while i + 8 <= n {
        let x = _mm256_loadu_ps(g.as_ptr().add(i));
        let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
        let s = _mm256_div_ps(x, _mm256_add_ps(one, e));
        _mm256_storeu_ps(
            out.as_mut_ptr().add(i),
            _mm256_mul_ps(s, _mm256_loadu_ps(u.as_ptr().add(i))),
        );
        i += 8;
    }
    for j in i..n {
        out[j] = g[j] / (1.0 + (-g[j]).exp()) * u[j];
    }
}

/// `e^x` for eight lanes: Cody-Waite range reduction by ln 2 and Cephes'
/// degree-5 polynomial (relative error ~2e-7). Inputs are clamped to
/// +-88.38, so very negative ones (and -inf) give 0.
///
/// # Safety
/// Needs AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp8(x: __m256) -> __m256 {
    let x = _mm256_min_ps(x, _mm256_set1_ps(88.376_26));
    let x = _mm256_max_ps(x, _mm256_set1_ps(-88.376_26));
    // n = round(x / ln 2); r = x - n ln 2 (ln 2 split in two for precision).
    let n = _mm256_floor_ps(_mm256_fmadd_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
        _mm256_set1_ps(0.5),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let r2 = _mm256_mul_ps(r, r);
    let y = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
    // 2^n through the exponent field (n + 127 = 0 gives 0.0).
    let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
        23,
    ));
    _mm256_mul_ps(y, pow2n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp8_is_within_a_few_ulp_of_libm_and_zero_far_below() {
        if !crate::cpu::features().avx2_fma {
            return;
        }
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let xs: [f32; 8] = std::array::from_fn(|j| x + j as f32 * 0.0013);
            let mut got = [0f32; 8];
            // SAFETY: features detected above.
            unsafe { _mm256_storeu_ps(got.as_mut_ptr(), exp8(_mm256_loadu_ps(xs.as_ptr()))) };
            for (g, &x) in got.iter().zip(&xs) {
                let want = (x as f64).exp();
                worst = worst.max(((*g as f64 - want) / want).abs());
            }
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        let low = [-100.0, f32::NEG_INFINITY, -89.0, -1e30, 0.0, 1.0, -1.0, 2.0];
        let mut got = [0f32; 8];
        // SAFETY: features detected above.
        unsafe { _mm256_storeu_ps(got.as_mut_ptr(), exp8(_mm256_loadu_ps(low.as_ptr()))) };
        assert!(got[..4].iter().all(|&v| v.abs() < 1e-37), "{got:?}");
        assert_eq!(got[4], 1.0);
    }
}
