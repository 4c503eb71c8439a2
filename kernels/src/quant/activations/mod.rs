//! Activation rows quantized to 8 bits per value in blocks of 32: the
//! public type, and the choice of block quantizer (`portable.rs`, or
//! `x86.rs` where the matmul kernel is AVX2).

use std::sync::OnceLock;

use half::f16;
use rayon::prelude::*;

use super::BLOCK;

mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

/// `[rows, cols]` activations as `q * d` per block of 32, with each block's
/// `d * sum(q)` (the term a Q4_1 minimum multiplies) and `sum(q)` exactly.
///
/// Scales are rounded through f16 as in llama.cpp's Q8_0/Q8_1 blocks, so the
/// products equal those of candle's and llama.cpp's kernels up to the order
/// of the float additions.
///
/// K-quant weights take the same blocks of 32 (llama.cpp quantizes their
/// activations to Q8_K, one scale per 256): a scale per 32 follows outliers
/// more closely, one quantization serves matrices of every format (a fused
/// QKV may mix them), and a K-quant sub-block (32 values, or two groups of
/// 16 for Q6_K) never straddles two activation scales. The cost is one
/// float multiply-add per sub-block instead of per 256, which is small
/// beside the integer work. Minimums multiply the exact `d * sum(q)`, not
/// Q4_1's rounded one.
#[derive(Debug, Clone)]
pub struct QuantizedRows {
    rows: usize,
    cols: usize,
    pub(super) qs: Vec<i8>,
    pub(super) d: Vec<f32>,
    pub(super) s: Vec<f32>,
    pub(super) sum: Vec<i32>,
    /// The rows in groups of four and of eight, interleaved for the SIMD
    /// kernels (built on first use, once per call's activations).
    interleaved: [OnceLock<Interleaved>; 2],
}

/// Rows in groups of `group` (the last one may be shorter), each group's
/// rows interleaved: four bytes of every row of the group, then the next
/// four; per block of 32, every row's scale, then the next block's. A SIMD
/// kernel then reaches any row of its group at a constant offset from one
/// pointer, where separate rows would each hold a register (or spill).
#[derive(Debug, Clone)]
pub(super) struct Interleaved {
    group: usize,
    cols: usize,
    /// `[group][cols / 4][rows of the group]` four bytes, as one `i32`.
    q: Vec<i32>,
    /// `[group][blocks][rows of the group]`.
    d: Vec<f32>,
    s: Vec<f32>,
    sum: Vec<i32>,
}

/// One group of an [`Interleaved`]: `rows` rows.
#[derive(Debug, Clone, Copy)]
pub(super) struct GroupRows<'a> {
    pub rows: usize,
    pub q: &'a [i32],
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub sum: &'a [i32],
}

impl Interleaved {
    fn new(acts: &QuantizedRows, group: usize) -> Self {
        let (cols, nb) = (acts.cols, acts.cols / BLOCK);
        let mut out = Self {
            group,
            cols,
            q: Vec::with_capacity(acts.rows * cols / 4),
            d: Vec::with_capacity(acts.rows * nb),
            s: Vec::with_capacity(acts.rows * nb),
            sum: Vec::with_capacity(acts.rows * nb),
        };
        for first in (0..acts.rows).step_by(group) {
            let rows: Vec<ActRow<'_>> = (first..acts.rows.min(first + group))
                .map(|i| acts.row(i))
                .collect();
            let mut runs: Vec<_> = rows.iter().map(|r| r.q.chunks_exact(4)).collect();
            for _ in 0..cols / 4 {
                for run in &mut runs {
                    let c = run.next().expect("cols is a multiple of 32");
                    out.q.push(i32::from_le_bytes([
                        c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8,
                    ]));
                }
            }
            for b in 0..nb {
                out.d.extend(rows.iter().map(|r| r.d[b]));
                out.s.extend(rows.iter().map(|r| r.s[b]));
                out.sum.extend(rows.iter().map(|r| r.sum[b]));
            }
        }
        out
    }

    /// The group that starts at row `first` (a multiple of the group size),
    /// of `rows` rows.
    pub fn group(&self, first: usize, rows: usize) -> GroupRows<'_> {
        debug_assert_eq!(first % self.group, 0);
        let (q0, b0) = (first * self.cols / 4, first * self.cols / BLOCK);
        let (qn, bn) = (rows * self.cols / 4, rows * self.cols / BLOCK);
        GroupRows {
            rows,
            q: &self.q[q0..q0 + qn],
            d: &self.d[b0..b0 + bn],
            s: &self.s[b0..b0 + bn],
            sum: &self.sum[b0..b0 + bn],
        }
    }
}

/// One quantized activation row: values, and per block of 32 the scale, the
/// f16-rounded `d * sum(q)` and `sum(q)`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ActRow<'a> {
    pub q: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub sum: &'a [i32],
}

impl QuantizedRows {
    pub fn quantize(x: &[f32], rows: usize, cols: usize) -> Self {
        assert_eq!(x.len(), rows * cols, "activation shape");
        assert_eq!(cols % BLOCK, 0, "columns must be a multiple of {BLOCK}");
        let nblocks = rows * cols / BLOCK;
        let mut qs = vec![0i8; rows * cols];
        let mut d = vec![0f32; nblocks];
        let mut s = vec![0f32; nblocks];
        let mut sums = vec![0i32; nblocks];
        let simd = super::dot::select() != super::dot::Kernel::Portable;
        // Rows in parallel (each row's blocks are independent of the rest).
        let nb = cols / BLOCK;
        qs.par_chunks_mut(cols)
            .zip(d.par_chunks_mut(nb).zip(s.par_chunks_mut(nb)))
            .zip(sums.par_chunks_mut(nb).zip(x.par_chunks(cols)))
            .for_each(|((qs, (d, s)), (sums, x))| {
                for (b, (src, dst)) in x.chunks_exact(BLOCK).zip(qs.chunks_exact_mut(BLOCK)).enumerate() {
                    let (scale, sum) = quantize_block(simd, src, dst);
                    let dh = f16::from_f32(scale);
                    d[b] = dh.to_f32();
                    s[b] = (f16::from_f32(sum as f32) * dh).to_f32();
                    sums[b] = sum;
                }
            });
        Self {
            rows,
            cols,
            qs,
            d,
            s,
            sum: sums,
            interleaved: Default::default(),
        }
    }

    /// The rows in interleaved groups of `group` (4 or 8).
    pub(super) fn interleaved(&self, group: usize) -> &Interleaved {
        let slot = match group {
            4 => 0,
            8 => 1,
            _ => panic!("groups of 4 or 8 rows, not {group}"),
        };
        self.interleaved[slot].get_or_init(|| Interleaved::new(self, group))
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i`.
    pub(super) fn row(&self, i: usize) -> ActRow<'_> {
        let nb = self.cols / BLOCK;
        ActRow {
            q: &self.qs[i * self.cols..(i + 1) * self.cols],
            d: &self.d[i * nb..(i + 1) * nb],
            s: &self.s[i * nb..(i + 1) * nb],
            sum: &self.sum[i * nb..(i + 1) * nb],
        }
    }

    /// The values the kernels multiply, `q * d` (for references and tests).
    pub fn dequantize(&self) -> Vec<f32> {
        self.qs
            .iter()
            .enumerate()
            .map(|(i, &q)| q as f32 * self.d[i / BLOCK])
            .collect()
    }
}

/// Quantizes 32 values to `round(v / scale)` with `scale = max|v| / 127`
/// (ties to even); returns the scale and the sum of the quantized values.
/// The AVX2 and portable versions give the same bits.
pub(super) fn quantize_block(simd: bool, src: &[f32], dst: &mut [i8]) -> (f32, i32) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        return x86::quantize_block(src, dst);
    }
    let _ = simd;
    portable::quantize_block(src, dst)
}
