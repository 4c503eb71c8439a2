//! AVX2 (and AVX-512 VNNI) versions of the weight-row-times-batch dot.
//!
//! A weight block is loaded and unpacked once, then multiplied with up to
//! four activation rows held in separate accumulators. Each row's sequence
//! of instructions is the same whether it is alone or in a group, so its
//! result is too.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::dot::WeightRow;
use super::{QuantFormat, QuantizedRows, BLOCK};

/// Rows of the batch that share one pass over the weight row.
const GROUP: usize = 4;

pub(super) fn row_times_batch(vnni: bool, format: QuantFormat, w: &WeightRow<'_>, acts: &QuantizedRows, out: &mut [f32]) {
    let nb = w.d.len();
    let qsb = if format == QuantFormat::Q8_0 { BLOCK } else { BLOCK / 2 };
    assert!(w.qs.len() == nb * qsb && (format == QuantFormat::Q8_0 || w.m.len() == nb));
    assert_eq!(acts.cols(), nb * BLOCK);
    let mut i = 0;
    while i < out.len() {
        let n = (out.len() - i).min(GROUP);
        let rows: [(&[i8], &[f32], &[f32]); GROUP] = std::array::from_fn(|r| acts.row(i + r.min(n - 1)));
        // SAFETY: `select` chose this kernel only after detecting AVX2 + FMA
        // (and AVX-512 VNNI/VL for `vnni`); the slice lengths were checked
        // above and `acts.row` gives `nb` blocks per row.
        let sums = unsafe {
            match (format, vnni) {
                (QuantFormat::Q4_1, false) => q4_1_avx2(w, &rows, n),
                (QuantFormat::Q4_1, true) => q4_1_vnni(w, &rows, n),
                (QuantFormat::Q8_0, false) => q8_0_avx2(w, &rows, n),
                (QuantFormat::Q8_0, true) => q8_0_vnni(w, &rows, n),
            }
        };
        out[i..i + n].copy_from_slice(&sums[..n]);
        i += n;
    }
}

type Rows<'a> = [(&'a [i8], &'a [f32], &'a [f32]); GROUP];

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// The 32 nibbles of a Q4_1 block as bytes 0..15 (low nibbles) and 16..31
/// (high nibbles), matching the order of the activation block.
#[inline(always)]
unsafe fn unpack_nibbles(p: *const u8) -> __m256i {
    let raw = _mm_loadu_si128(p as *const __m128i);
    let both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

/// `u8 x i8` products summed in fours to eight i32 lanes.
#[inline(always)]
unsafe fn dot_u8_i8_avx2(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

#[inline(always)]
unsafe fn dot_u8_i8_vnni(u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
}

macro_rules! q4_1_kernel {
    ($name:ident, $features:literal, $dot:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $name(w: &WeightRow<'_>, x: &Rows<'_>, n: usize) -> [f32; GROUP] {
            let mut acc = [_mm256_setzero_ps(); GROUP];
            let mut mins = [0f32; GROUP];
            for b in 0..w.d.len() {
                let wq = unpack_nibbles(w.qs.as_ptr().add(b * 16));
                let (wd, wm) = (*w.d.get_unchecked(b), *w.m.get_unchecked(b));
                for r in 0..GROUP {
                    if r < n {
                        let (xq, xd, xs) = x[r];
                        let v = _mm256_loadu_si256(xq.as_ptr().add(b * BLOCK) as *const __m256i);
                        let p = _mm256_cvtepi32_ps($dot(wq, v));
                        acc[r] = _mm256_fmadd_ps(p, _mm256_set1_ps(wd * *xd.get_unchecked(b)), acc[r]);
                        mins[r] += wm * *xs.get_unchecked(b);
                    }
                }
            }
            std::array::from_fn(|r| hsum(acc[r]) + mins[r])
        }
    };
}

macro_rules! q8_0_kernel {
    ($name:ident, $features:literal, $dot:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $name(w: &WeightRow<'_>, x: &Rows<'_>, n: usize) -> [f32; GROUP] {
            let mut acc = [_mm256_setzero_ps(); GROUP];
            for b in 0..w.d.len() {
                let wq = _mm256_loadu_si256(w.qs.as_ptr().add(b * BLOCK) as *const __m256i);
                // |w| as unsigned bytes, the sign moved onto the activations.
                let wabs = _mm256_sign_epi8(wq, wq);
                let wd = *w.d.get_unchecked(b);
                for r in 0..GROUP {
                    if r < n {
                        let (xq, xd, _) = x[r];
                        let v = _mm256_loadu_si256(xq.as_ptr().add(b * BLOCK) as *const __m256i);
                        let p = _mm256_cvtepi32_ps($dot(wabs, _mm256_sign_epi8(v, wq)));
                        acc[r] = _mm256_fmadd_ps(p, _mm256_set1_ps(wd * *xd.get_unchecked(b)), acc[r]);
                    }
                }
            }
            std::array::from_fn(|r| hsum(acc[r]))
        }
    };
}

q4_1_kernel!(q4_1_avx2, "avx2,fma", dot_u8_i8_avx2);
q4_1_kernel!(q4_1_vnni, "avx2,fma,avx512vnni,avx512vl", dot_u8_i8_vnni);
q8_0_kernel!(q8_0_avx2, "avx2,fma", dot_u8_i8_avx2);
q8_0_kernel!(q8_0_vnni, "avx2,fma,avx512vnni,avx512vl", dot_u8_i8_vnni);
