//! AVX2 + FMA + F16C version of one head group's attention (`portable.rs`),
//! compiled per head size (32, 64 or 128 values).
//!
//! A task is a tile of consecutive positions of one sequence (one token in
//! decode, up to eight in a prefill). Cache rows are widened to f32 (F16C
//! for the f16 cache) once per tile into a small buffer that stays in L1,
//! and every query row of the tile reads them there.
//!
//! Scores come eight positions at a time: each position's dot product stays
//! in an 8-lane accumulator and the eight accumulators are reduced together
//! by a tree of horizontal adds, instead of one horizontal sum per dot.
//! Values are accumulated with FMA, up to 64 columns in registers. The
//! softmax's exponentials are eight-lane polynomials (`vector/x86.rs`).
//! Every query row does the same operations in the same order whatever its
//! tile, so a token's result depends only on its own query and cache rows.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::{HeadGroup, Scratch};
use crate::kv_store::KvView;
use crate::vector::x86::exp8;

/// Whether this path can run (needs AVX2, FMA, F16C and a head of 32, 64 or
/// 128 values).
pub(super) fn usable(head_dim: usize) -> bool {
    let cpu = crate::cpu::features();
    matches!(head_dim, 32 | 64 | 128) && cpu.avx2_fma && cpu.f16c
}

/// # Safety
/// Only after [`usable`] returned true for `job.shape.head_dim`.
pub(super) unsafe fn run(job: &HeadGroup<'_>, scratch: &mut Scratch, outs: &mut [&mut [f32]]) {
    match (job.k_cache, job.v_cache) {
        (KvView::F32(k), KvView::F32(v)) => {
            run_sized::<false>(job, k.as_ptr().cast(), v.as_ptr().cast(), scratch, outs)
        }
        (KvView::F16(k), KvView::F16(v)) => {
            run_sized::<true>(job, k.as_ptr().cast(), v.as_ptr().cast(), scratch, outs)
        }
        _ => panic!("K and V caches differ in element type"),
    }
}

/// Picks the kernel compiled for the head size, so its loops over the head
/// unroll and the query and sums stay in registers.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn run_sized<const F16: bool>(
    job: &HeadGroup<'_>,
    k_cache: *const u8,
    v_cache: *const u8,
    scratch: &mut Scratch,
    outs: &mut [&mut [f32]],
) {
    match job.shape.head_dim {
        32 => run_typed::<F16, 4>(job, k_cache, v_cache, scratch, outs),
        64 => run_typed::<F16, 8>(job, k_cache, v_cache, scratch, outs),
        128 => run_typed::<F16, 16>(job, k_cache, v_cache, scratch, outs),
        hd => unreachable!("no kernel for head size {hd}"),
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

/// Positions whose value rows are widened together for a tile.
const V_CHUNK: usize = 32;

/// One tile for a head of `8 * D` values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn run_typed<const F16: bool, const D: usize>(
    job: &HeadGroup<'_>,
    k_cache: *const u8,
    v_cache: *const u8,
    scratch: &mut Scratch,
    outs: &mut [&mut [f32]],
) {
    let Scratch {
        scores,
        offsets: rows,
        widened,
        ..
    } = scratch;
    let (shape, group, tokens) = (job.shape, job.group, job.tokens);
    let hd = shape.head_dim;
    let n_max = job.positions();
    assert!(hd == 8 * D);
    assert!(outs.len() == tokens.len() && outs.iter().all(|o| o.len() == group * hd));
    // Query row r = i * group + h keeps its scores at r * n_max.
    scores.clear();
    scores.resize(tokens.len() * group * n_max, 0.0);
    // Row offsets of the group's KV head, one per position.
    rows.clear();
    rows.extend((0..n_max).map(|p| shape.row_offset(tokens[0].blocks, p) + job.kv_head * hd));
    assert!(rows
        .iter()
        .all(|&r| r + hd <= job.k_cache.len() && r + hd <= job.v_cache.len()));
    widened.clear();
    widened.resize((8 * hd).max(V_CHUNK * 64), 0.0);
    let buf = widened.as_mut_ptr();
    let scale = _mm256_set1_ps(job.scale);
    // Scores, eight positions at a time: their K rows are widened once
    // into `buf`, then every query row of the tile that sees them uses them.
    // A row's query stays in registers; each position's dot is one 8-lane
    // accumulator, and the eight are reduced together.
    for p0 in (0..n_max).step_by(8) {
        let c = (n_max - p0).min(8);
        for j in 0..c {
            for d in 0..D {
                _mm256_storeu_ps(
                    buf.add(j * hd + 8 * d),
                    load8::<F16>(k_cache, rows[p0 + j] + 8 * d),
                );
            }
        }
        for (i, tok) in tokens.iter().enumerate() {
            let Some(cnt) = (tok.pos + 1).checked_sub(p0).filter(|&c| c > 0) else {
                continue;
            };
            let cnt = cnt.min(8);
            for h in 0..group {
                let q = job.query(i, h).as_ptr();
                let mut qv = [_mm256_setzero_ps(); D];
                for (d, v) in qv.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(q.add(8 * d));
                }
                // Lanes past `cnt` are never read (each lane of the
                // reduction sums only its own position).
                let lo = dot4::<D>(&qv, buf);
                let hi = if cnt > 4 {
                    dot4::<D>(&qv, buf.add(4 * hd))
                } else {
                    [_mm256_setzero_ps(); 4]
                };
                let acc = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]];
                let sums = _mm256_mul_ps(reduce8(&acc), scale);
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), sums);
                let at = (i * group + h) * n_max + p0;
                scores[at..at + cnt].copy_from_slice(&lanes[..cnt]);
            }
        }
    }
    for (i, tok) in tokens.iter().enumerate() {
        for h in 0..group {
            let at = (i * group + h) * n_max;
            softmax(&mut scores[at..at + tok.pos + 1]);
        }
    }
    // out[h] = sum_p s[h, p] * v_p, up to 64 columns of the head (eight
    // registers) at a time, over chunks of positions whose V rows are
    // widened once for the tile. A row's sums are kept in its output
    // between chunks, so each is still one run of FMAs in position order.
    let width = D.min(8);
    for d0 in (0..hd).step_by(8 * width) {
        for p0 in (0..n_max).step_by(V_CHUNK) {
            let c = (n_max - p0).min(V_CHUNK);
            for j in 0..c {
                for w in 0..width {
                    let v = load8::<F16>(v_cache, rows[p0 + j] + d0 + 8 * w);
                    _mm256_storeu_ps(buf.add(j * 64 + 8 * w), v);
                }
            }
            for ((i, tok), out) in tokens.iter().enumerate().zip(outs.iter_mut()) {
                let end = (tok.pos + 1).min(p0 + c);
                if end <= p0 {
                    continue;
                }
                for h in 0..group {
                    let s = &scores[(i * group + h) * n_max..][..end];
                    let o = out.as_mut_ptr().add(h * hd + d0);
                    let mut acc = [_mm256_setzero_ps(); 8];
                    if p0 > 0 {
                        for (w, a) in acc.iter_mut().enumerate().take(width) {
                            *a = _mm256_loadu_ps(o.add(8 * w));
                        }
                    }
                    for (j, &sp) in s[p0..end].iter().enumerate() {
                        let sp = _mm256_set1_ps(sp);
                        let v = buf.add(j * 64);
                        for (w, a) in acc.iter_mut().enumerate().take(width) {
                            *a = _mm256_fmadd_ps(sp, _mm256_loadu_ps(v.add(8 * w)), *a);
                        }
                    }
                    for (w, a) in acc.iter().enumerate().take(width) {
                        _mm256_storeu_ps(o.add(8 * w), *a);
                    }
                }
            }
        }
    }
}

/// The dot products of the query `q` with the four widened K rows at `k`
/// (rows of `8 * D` values), each left in an 8-lane accumulator.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot4<const D: usize>(q: &[__m256; D], k: *const f32) -> [__m256; 4] {
    let mut acc = [_mm256_setzero_ps(); 4];
    for (d, &qd) in q.iter().enumerate() {
        for (j, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k.add(j * 8 * D + 8 * d)), *a);
        }
    }
    acc
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
