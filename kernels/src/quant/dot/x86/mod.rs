//! x86 versions of the panel-times-batch dot (`panel.rs` layout).
//!
//! Activation rows go in groups of up to four: each panel block is loaded
//! (and unpacked) once per group and multiplied with every row of it, each
//! row in its own accumulators. The eight lanes of a register are the
//! panel's eight weight rows, so a block's integer sums come out one per
//! lane and its scales apply lane-wise. A row's sequence of instructions is
//! the same whatever group it is in (the group size is a const parameter;
//! rows never mix) and the same as `portable.rs`'s arithmetic, so its
//! result is too.
//!
//! The kernels are written once over [`IntDot`], the unsigned-by-signed
//! byte multiply-add: AVX2's `maddubs` + `madd` ([`Avx2`]) or AVX-512
//! VNNI's `vpdpbusd` on 256-bit registers ([`Vnni`]). Both give the exact
//! integer sums, so both give the same bits. Everything below the two
//! entry points is `#[inline(always)]` without a `target_feature` of its
//! own: it is compiled inside the entry point, with that entry's features.
//!
//! `legacy.rs` holds the blocks of 32 (Q8_0, Q4_1, Q5_0), `kquants.rs` the
//! super-blocks of 256 (Q4_K, Q5_K, Q6_K); this file the dispatch and the
//! pieces they share.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::Panel;
use crate::quant::activations::GroupRows;
use crate::quant::panel::PANEL;
use crate::quant::{QMatrix, QuantFormat, QuantizedRows, BLOCK};

mod kquants;
mod legacy;

/// Unsigned weight bytes times signed activation bytes, four per 32-bit
/// lane (one lane per weight row). Callers keep every sum exact: a "short"
/// accumulator holds 16-bit sums on AVX2, so it takes only what fits.
pub(super) trait IntDot {
    /// Whether a byte product goes straight into 32 bits: an unsigned
    /// operand may then be up to 255 without the 16-bit pair sums of
    /// AVX2's `maddubs` saturating.
    const WIDE_PRODUCTS: bool;
    /// Rows of the batch that share one pass over a panel of `format`: as
    /// many as the registers hold beside the unpacking (each row keeps an
    /// integer and a float accumulator).
    fn group(format: QuantFormat) -> usize;
    /// `acc + w * x` into a short accumulator.
    unsafe fn short(acc: __m256i, w: __m256i, x: __m256i) -> __m256i;
    /// A short accumulator as 32-bit sums.
    unsafe fn widen(acc: __m256i) -> __m256i;
    /// A short accumulator times a signed 32-bit scale per lane.
    unsafe fn scaled(acc: __m256i, scale: __m256i) -> __m256i;
    /// `acc + w * x` into 32-bit sums.
    unsafe fn single32(acc: __m256i, w: __m256i, x: __m256i) -> __m256i;
    /// `acc + w1 * x1 + w2 * x2` into 32-bit sums (the two products'
    /// pairwise sums fit 16 bits together).
    unsafe fn pair32(acc: __m256i, w1: __m256i, x1: __m256i, w2: __m256i, x2: __m256i) -> __m256i;
}

/// One group of `N` activation rows against a tile: the entry point
/// compiled with the instruction set's features ([`entry_point`]).
pub(super) trait EntryPoint: IntDot {
    unsafe fn group_tile<const N: usize>(
        w: &QMatrix,
        first: usize,
        x: GroupRows<'_>,
        outs: &mut [&mut [f32]],
    );
}

/// `$isa`'s [`EntryPoint`]: a function with `target_feature($features)`
/// into which every `#[inline(always)]` kernel below is compiled.
macro_rules! entry_point {
    ($isa:ty, $name:ident, $features:literal) => {
        #[target_feature(enable = $features)]
        unsafe fn $name<const N: usize>(
            w: &QMatrix,
            first: usize,
            x: GroupRows<'_>,
            outs: &mut [&mut [f32]],
        ) {
            group_tile::<$isa, N>(w, first, x, outs)
        }

        impl EntryPoint for $isa {
            #[inline(always)]
            unsafe fn group_tile<const N: usize>(
                w: &QMatrix,
                first: usize,
                x: GroupRows<'_>,
                outs: &mut [&mut [f32]],
            ) {
                $name::<N>(w, first, x, outs)
            }
        }
    };
}

entry_point!(Avx2, group_tile_avx2, "avx2,fma");
entry_point!(Vnni, group_tile_vnni, "avx2,fma,avx512vnni,avx512vl");

/// AVX2: `maddubs` gives 16-bit pair sums, `madd` against ones widens them.
pub(super) struct Avx2;

impl IntDot for Avx2 {
    const WIDE_PRODUCTS: bool = false;
    fn group(_: QuantFormat) -> usize {
        4
    }
    #[inline(always)]
    unsafe fn short(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
        _mm256_add_epi16(acc, _mm256_maddubs_epi16(w, x))
    }
    #[inline(always)]
    unsafe fn widen(acc: __m256i) -> __m256i {
        _mm256_madd_epi16(acc, _mm256_set1_epi16(1))
    }
    #[inline(always)]
    unsafe fn scaled(acc: __m256i, scale: __m256i) -> __m256i {
        // The scale in both 16-bit halves of its lane: one `madd`.
        let pair = _mm256_or_si256(
            _mm256_and_si256(scale, _mm256_set1_epi32(0xFFFF)),
            _mm256_slli_epi32(scale, 16),
        );
        _mm256_madd_epi16(acc, pair)
    }
    #[inline(always)]
    unsafe fn single32(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
        _mm256_add_epi32(acc, Self::widen(_mm256_maddubs_epi16(w, x)))
    }
    #[inline(always)]
    unsafe fn pair32(acc: __m256i, w1: __m256i, x1: __m256i, w2: __m256i, x2: __m256i) -> __m256i {
        let p = _mm256_add_epi16(_mm256_maddubs_epi16(w1, x1), _mm256_maddubs_epi16(w2, x2));
        _mm256_add_epi32(acc, Self::widen(p))
    }
}

/// AVX-512 VNNI (with VL): `vpdpbusd` adds four byte products per lane
/// straight into 32 bits, so every accumulator is 32-bit.
pub(super) struct Vnni;

impl IntDot for Vnni {
    const WIDE_PRODUCTS: bool = true;
    /// AVX-512VL code has 32 vector registers (AVX2 code 16): eight rows,
    /// except Q6_K, whose unpacking needs more of them (eight rows spill and
    /// run at 0.6x of four, measured with `examples/quant_matmul`).
    fn group(format: QuantFormat) -> usize {
        if format == QuantFormat::Q6K {
            4
        } else {
            8
        }
    }
    #[inline(always)]
    unsafe fn short(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, w, x)
    }
    #[inline(always)]
    unsafe fn widen(acc: __m256i) -> __m256i {
        acc
    }
    #[inline(always)]
    unsafe fn scaled(acc: __m256i, scale: __m256i) -> __m256i {
        _mm256_mullo_epi32(acc, scale)
    }
    #[inline(always)]
    unsafe fn single32(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, w, x)
    }
    #[inline(always)]
    unsafe fn pair32(acc: __m256i, w1: __m256i, x1: __m256i, w2: __m256i, x2: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(acc, w1, x1), w2, x2)
    }
}

/// `I` must be an instruction set the CPU runs (`dot::select` checks).
pub(super) fn tile<I: EntryPoint>(w: &QMatrix, first: usize, acts: &QuantizedRows, outs: &mut [&mut [f32]]) {
    let m = outs.len();
    let group = I::group(w.format());
    let interleaved = acts.interleaved(group);
    let mut i = 0;
    while i < m {
        let n = (m - i).min(group);
        let rows = interleaved.group(i, n);
        let group = &mut outs[i..i + n];
        // SAFETY: `select` chose this kernel only after detecting its
        // features; `group_tile` checks every slice length it reads through.
        unsafe {
            match n {
                8 => I::group_tile::<8>(w, first, rows, group),
                7 => I::group_tile::<7>(w, first, rows, group),
                6 => I::group_tile::<6>(w, first, rows, group),
                5 => I::group_tile::<5>(w, first, rows, group),
                4 => I::group_tile::<4>(w, first, rows, group),
                3 => I::group_tile::<3>(w, first, rows, group),
                2 => I::group_tile::<2>(w, first, rows, group),
                _ => I::group_tile::<1>(w, first, rows, group),
            }
        }
        i += n;
    }
}

#[inline(always)]
unsafe fn group_tile<I: IntDot, const N: usize>(
    w: &QMatrix,
    first: usize,
    x: GroupRows<'_>,
    outs: &mut [&mut [f32]],
) {
    let format = w.format();
    let nb = w.cols() / format.block_len();
    let nx = w.cols() / BLOCK;
    assert!(
        x.rows == N
            && x.q.len() == N * w.cols() / 4
            && x.d.len() == N * nx
            && x.s.len() == N * nx
            && x.sum.len() == N * nx
    );
    let x = Rows::<N>(x);
    let len = outs[0].len();
    for (p, start) in (0..len).step_by(PANEL).enumerate() {
        let panel = w.panel(first / PANEL + p);
        let mins = if format.has_min() { nb * PANEL } else { 0 };
        assert!(
            panel.qs.len() == nb * PANEL * format.qs_bytes()
                && panel.d.len() == nb * PANEL
                && panel.m.len() == mins
        );
        let sums = match format {
            QuantFormat::Q8_0 => legacy::q8_0::<I, N>(&panel, &x),
            QuantFormat::Q4_1 => legacy::q4_1::<I, N>(&panel, &x),
            QuantFormat::Q5_0 => legacy::q5_0::<I, N>(&panel, &x),
            QuantFormat::Q4K => kquants::q4k_q5k::<I, N, false>(&panel, &x),
            QuantFormat::Q5K => kquants::q4k_q5k::<I, N, true>(&panel, &x),
            QuantFormat::Q6K => kquants::q6k::<I, N>(&panel, &x),
        };
        let lanes = (len - start).min(PANEL);
        for r in 0..N {
            let mut v = [0f32; PANEL];
            _mm256_storeu_ps(v.as_mut_ptr(), sums[r]);
            outs[r][start..start + lanes].copy_from_slice(&v[..lanes]);
        }
    }
}

/// A group of `N` activation rows, interleaved (`activations.rs`): every
/// row at a constant offset from one pointer. Lengths are checked once, in
/// `group_tile`.
pub(super) struct Rows<'a, const N: usize>(GroupRows<'a>);

impl<const N: usize> Rows<'_, N> {
    /// Row `r`'s four bytes from column `col` (a multiple of four), in every
    /// 32-bit lane.
    #[inline(always)]
    unsafe fn q4(&self, r: usize, col: usize) -> __m256i {
        _mm256_set1_epi32(*self.0.q.get_unchecked(col / 4 * N + r))
    }
    /// Row `r`'s scale of block `b`.
    #[inline(always)]
    unsafe fn d(&self, r: usize, b: usize) -> f32 {
        *self.0.d.get_unchecked(b * N + r)
    }
    /// Row `r`'s f16-rounded `d * sum(q)` of block `b`.
    #[inline(always)]
    unsafe fn s(&self, r: usize, b: usize) -> f32 {
        *self.0.s.get_unchecked(b * N + r)
    }
    /// Row `r`'s `sum(q)` of block `b`.
    #[inline(always)]
    unsafe fn sum(&self, r: usize, b: usize) -> i32 {
        *self.0.sum.get_unchecked(b * N + r)
    }
}

/// `acc = isum * (d_w * d_x) + acc`, lane-wise.
#[inline(always)]
unsafe fn scale_into(isum: __m256i, wd: __m256, xd: f32, acc: __m256) -> __m256 {
    _mm256_fmadd_ps(
        _mm256_cvtepi32_ps(isum),
        _mm256_mul_ps(wd, _mm256_set1_ps(xd)),
        acc,
    )
}

/// The 32-bit loads of panel run `run` of the block at `base`.
#[inline(always)]
unsafe fn run_at(base: *const u8, run: usize) -> __m256i {
    _mm256_loadu_si256(base.add(run * 32) as *const __m256i)
}

/// Byte `i` (0..4) of every 32-bit lane, zero-extended (a sub-block's
/// scale or minimum, one per row).
#[inline(always)]
unsafe fn lane_byte_u8(v: __m256i, i: usize) -> __m256i {
    _mm256_and_si256(
        _mm256_srlv_epi32(v, _mm256_set1_epi32(8 * i as i32)),
        _mm256_set1_epi32(0xFF),
    )
}

/// Byte `i` (0..4) of every 32-bit lane, sign-extended.
#[inline(always)]
unsafe fn lane_byte_i8(v: __m256i, i: usize) -> __m256i {
    _mm256_srai_epi32(_mm256_sllv_epi32(v, _mm256_set1_epi32(24 - 8 * i as i32)), 24)
}

/// One sub-block of 32 nibbles (four runs from `nib`), with fifth bits
/// from the run at `qh` when `FIVE`, times activation columns `xb * 32..`
/// of every row: each row's exact integer dot product, lane per weight row.
///
/// Nibbles times |x| <= 127 summed over 32 columns stay below 2^15, so the
/// `maddubs` pairs add up in 16 bits before one widening; five-bit values
/// can reach twice that, so they widen per run (a second set of 16-bit sums
/// would not fit in the registers beside the float accumulators).
#[inline(always)]
unsafe fn unsigned_sub_block<I: IntDot, const N: usize, const FIVE: bool>(
    nib: *const u8,
    qh: *const u8,
    x: &Rows<'_, N>,
    xb: usize,
) -> [__m256i; N] {
    let low = _mm256_set1_epi8(0x0F);
    let bit4 = _mm256_set1_epi8(0x10);
    let mut high = if FIVE {
        _mm256_loadu_si256(qh as *const __m256i)
    } else {
        _mm256_setzero_si256()
    };
    let mut sums = [_mm256_setzero_si256(); N];
    for k in 0..4 {
        let raw = run_at(nib, k);
        let mut lo = _mm256_and_si256(raw, low);
        let mut hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
        if FIVE {
            // Run k's fifth bits sit at bit k (low nibbles) and 4 + k
            // (high) of each byte: shifted right k times, at 0 and 4.
            lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(high, 4), bit4));
            hi = _mm256_or_si256(hi, _mm256_and_si256(high, bit4));
            high = _mm256_srli_epi16(high, 1);
        }
        for (r, sum) in sums.iter_mut().enumerate() {
            let at = xb * BLOCK + 4 * k;
            let (x1, x2) = (x.q4(r, at), x.q4(r, at + 16));
            *sum = if FIVE {
                I::pair32(*sum, lo, x1, hi, x2)
            } else {
                // Short sums until the end of the sub-block.
                I::short(I::short(*sum, lo, x1), hi, x2)
            };
        }
    }
    if !FIVE {
        for s in &mut sums {
            *s = I::widen(*s);
        }
    }
    sums
}
