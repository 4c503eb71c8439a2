//! AVX2 + FMA version of one head group's attention (`paged_attention.rs`).
//!
//! Scores come eight positions at a time: each position's 64-wide (any
//! multiple of 8) dot product stays in an 8-lane accumulator and the eight
//! accumulators are reduced together by a tree of horizontal adds, instead
//! of one horizontal sum per dot. Values are accumulated with FMA into the
//! head's output held in registers-sized chunks. An f16 cache is widened
//! eight values at a time (F16C); the softmax's exponentials are eight-lane
//! polynomials (`vector::exp8`). A token's result depends only on its own
//! query and cache rows.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use crate::kv_store::KvView;
use crate::paged_attention::{HeadGroup, Scratch};
use crate::vector::exp8;

/// Whether this path can run (needs AVX2, FMA, F16C and `head_dim % 8 == 0`).
pub(crate) fn usable(head_dim: usize) -> bool {
    head_dim.is_multiple_of(8)
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// # Safety
/// Only after [`usable`] returned true for `job.shape.head_dim`.
pub(crate) unsafe fn run(job: &HeadGroup<'_>, scratch: &mut Scratch, out: &mut [f32]) {
    match (job.k_cache, job.v_cache) {
        (KvView::F32(k), KvView::F32(v)) => {
            run_typed::<false>(job, k.as_ptr().cast(), v.as_ptr().cast(), scratch, out)
        }
        (KvView::F16(k), KvView::F16(v)) => {
            run_typed::<true>(job, k.as_ptr().cast(), v.as_ptr().cast(), scratch, out)
        }
        _ => panic!("K and V caches differ in element type"),
    }
}

/// Eight cache values from element `at` of `base` (f16 when `F16`, else
/// f32), as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8<const F16: bool>(base: *const u8, at: usize) -> __m256 {
    if F16 {
        _mm256_cvtph_ps(_mm_loadu_si128(base.add(2 * at) as *const __m128i))
    } else {
        _mm256_loadu_ps(base.add(4 * at) as *const f32)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn run_typed<const F16: bool>(
    job: &HeadGroup<'_>,
    k_cache: *const u8,
    v_cache: *const u8,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    let Scratch {
        scores,
        offsets: rows,
        ..
    } = scratch;
    let (shape, group) = (job.shape, job.group);
    let hd = shape.head_dim;
    let n = job.token.pos + 1;
    assert!(job.q.len() == group * hd && out.len() == group * hd);
    scores.clear();
    scores.resize(group * n, 0.0);
    // Row offsets of the group's KV head, one per position.
    rows.clear();
    rows.extend((0..n).map(|p| shape.row_offset(job.token.blocks, p) + job.kv_head * hd));
    assert!(rows
        .iter()
        .all(|&r| r + hd <= job.k_cache.len() && r + hd <= job.v_cache.len()));
    let scale = _mm256_set1_ps(job.scale);
    for h in 0..group {
        let q = job.q.as_ptr().add(h * hd);
        for p0 in (0..n).step_by(8) {
            let cnt = (n - p0).min(8);
            let mut acc = [_mm256_setzero_ps(); 8];
            for (j, a) in acc.iter_mut().enumerate().take(cnt) {
                let k = rows[p0 + j];
                for d in (0..hd).step_by(8) {
                    *a = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(d)), load8::<F16>(k_cache, k + d), *a);
                }
            }
            let sums = _mm256_mul_ps(reduce8(&acc), scale);
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), sums);
            scores[h * n + p0..h * n + p0 + cnt].copy_from_slice(&lanes[..cnt]);
        }
    }
    for h in 0..group {
        softmax(&mut scores[h * n..(h + 1) * n]);
    }
    // out[h] = sum_p s[h, p] * v_p, up to 64 columns of the head (eight
    // registers) per pass over the values.
    for h in 0..group {
        let s = &scores[h * n..(h + 1) * n];
        let o = out.as_mut_ptr().add(h * hd);
        for d in (0..hd).step_by(64) {
            let width = (hd - d).min(64) / 8;
            let mut acc = [_mm256_setzero_ps(); 8];
            for (p, &w) in s.iter().enumerate() {
                let v = rows[p] + d;
                let w = _mm256_set1_ps(w);
                for (c, a) in acc.iter_mut().enumerate().take(width) {
                    *a = _mm256_fmadd_ps(w, load8::<F16>(v_cache, v + 8 * c), *a);
                }
            }
            for (c, a) in acc.iter().enumerate().take(width) {
                _mm256_storeu_ps(o.add(d + 8 * c), *a);
            }
        }
    }
}

/// `xs = softmax(xs)`, eight lanes at a time; the tail goes through a
/// buffer padded with -inf (whose exponential is 0).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn softmax(xs: &mut [f32]) {
    let n = xs.len();
    let full = n - n % 8;
    let mut tail = [f32::NEG_INFINITY; 8];
    tail[..n - full].copy_from_slice(&xs[full..]);
    let mut vmax = _mm256_loadu_ps(tail.as_ptr());
    for i in (0..full).step_by(8) {
        vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(xs.as_ptr().add(i)));
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), vmax);
    let max = _mm256_set1_ps(lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max));
    let mut sum = _mm256_setzero_ps();
    for i in (0..full).step_by(8) {
        let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(xs.as_ptr().add(i)), max));
        _mm256_storeu_ps(xs.as_mut_ptr().add(i), e);
        sum = _mm256_add_ps(sum, e);
    }
    let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(tail.as_ptr()), max));
    _mm256_storeu_ps(tail.as_mut_ptr(), e);
    sum = _mm256_add_ps(sum, e);
    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
    let inv = _mm256_set1_ps(1.0 / lanes.iter().sum::<f32>());
    for i in (0..full).step_by(8) {
        let p = xs.as_mut_ptr().add(i);
        _mm256_storeu_ps(p, _mm256_mul_ps(_mm256_loadu_ps(p), inv));
    }
    _mm256_storeu_ps(tail.as_mut_ptr(), _mm256_mul_ps(e, inv));
    xs[full..].copy_from_slice(&tail[..n - full]);
}

/// The eight lane sums of `a[0..8]`, as one vector (lane `j` = sum of `a[j]`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn reduce8(a: &[__m256; 8]) -> __m256 {
    let s01 = _mm256_hadd_ps(a[0], a[1]);
    let s23 = _mm256_hadd_ps(a[2], a[3]);
    let s45 = _mm256_hadd_ps(a[4], a[5]);
    let s67 = _mm256_hadd_ps(a[6], a[7]);
    let s0123 = _mm256_hadd_ps(s01, s23);
    let s4567 = _mm256_hadd_ps(s45, s67);
    let lo = _mm256_permute2f128_ps(s0123, s4567, 0x20);
    let hi = _mm256_permute2f128_ps(s0123, s4567, 0x31);
    _mm256_add_ps(lo, hi)
}
