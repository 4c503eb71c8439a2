//! Quantized matrix times a batch of activation rows (CPU).
//!
//! candle's quantized matmul multiplies one activation row at a time against
//! the whole weight matrix, so a decode step of 16 sequences streams every
//! weight 16 times, and it has no SIMD kernel at all for Q4_1. Here each
//! weight block is loaded (and unpacked) once and multiplied with every row
//! of the batch while it sits in registers.
//!
//! Activations are quantized per row to 8 bits in blocks of 32 (as llama.cpp
//! and candle do), and each row's arithmetic is the same whatever else is in
//! the batch: a sequence's result does not depend on its batch.

mod activations;
mod dot;
#[cfg(target_arch = "x86_64")]
mod dot_x86;

use half::f16;
use rayon::prelude::*;

pub use activations::QuantizedRows;

/// Values per quantization block (for every supported format).
pub const BLOCK: usize = 32;

/// How a weight block is stored (llama.cpp's layouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantFormat {
    /// 32 signed bytes times a scale: `w = d * q`.
    Q8_0,
    /// 32 nibbles, a scale and a minimum: `w = d * q + m`.
    Q4_1,
}

impl QuantFormat {
    /// Bytes per block in a GGUF file.
    pub fn ggml_block_bytes(self) -> usize {
        match self {
            Self::Q8_0 => 2 + BLOCK,
            Self::Q4_1 => 4 + BLOCK / 2,
        }
    }

    /// Bytes of quantized values per block once unpacked from the GGUF layout.
    fn qs_bytes(self) -> usize {
        match self {
            Self::Q8_0 => BLOCK,
            Self::Q4_1 => BLOCK / 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct QuantError(String);

/// A `[rows, cols]` weight matrix in blocks of 32 along `cols`, with the
/// quantized values, scales and minimums in separate arrays.
#[derive(Debug, Clone)]
pub struct QMatrix {
    format: QuantFormat,
    rows: usize,
    cols: usize,
    qs: Vec<u8>,
    d: Vec<f32>,
    /// Block minimums (Q4_1 only).
    m: Vec<f32>,
}

impl QMatrix {
    /// Reads the blocks of a GGUF tensor (`rows * cols / 32` blocks, row-major).
    pub fn from_ggml(
        format: QuantFormat,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<Self, QuantError> {
        if !cols.is_multiple_of(BLOCK) {
            return Err(QuantError(format!(
                "{cols} columns are not a multiple of {BLOCK}"
            )));
        }
        let nblocks = rows * cols / BLOCK;
        let bb = format.ggml_block_bytes();
        if bytes.len() != nblocks * bb {
            return Err(QuantError(format!(
                "{} bytes for {rows}x{cols} {format:?} (expected {})",
                bytes.len(),
                nblocks * bb
            )));
        }
        let half_at = |b: &[u8], i: usize| f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
        let mut qs = Vec::with_capacity(nblocks * format.qs_bytes());
        let mut d = Vec::with_capacity(nblocks);
        let mut m = Vec::new();
        for b in bytes.chunks_exact(bb) {
            d.push(half_at(b, 0));
            match format {
                QuantFormat::Q8_0 => qs.extend_from_slice(&b[2..]),
                QuantFormat::Q4_1 => {
                    m.push(half_at(b, 2));
                    qs.extend_from_slice(&b[4..]);
                }
            }
        }
        Ok(Self {
            format,
            rows,
            cols,
            qs,
            d,
            m,
        })
    }

    /// Stacks matrices with the same format and columns (for example Q, K
    /// and V) into one, so one call multiplies them all.
    pub fn concat_rows(parts: &[QMatrix]) -> Result<Self, QuantError> {
        let first = parts
            .first()
            .ok_or_else(|| QuantError("nothing to concatenate".into()))?;
        if parts
            .iter()
            .any(|p| p.format != first.format || p.cols != first.cols)
        {
            return Err(QuantError("matrices differ in format or columns".into()));
        }
        Ok(Self {
            format: first.format,
            rows: parts.iter().map(|p| p.rows).sum(),
            cols: first.cols,
            qs: parts.iter().flat_map(|p| p.qs.iter().copied()).collect(),
            d: parts.iter().flat_map(|p| p.d.iter().copied()).collect(),
            m: parts.iter().flat_map(|p| p.m.iter().copied()).collect(),
        })
    }

    pub fn format(&self) -> QuantFormat {
        self.format
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        self.qs.len() + 4 * (self.d.len() + self.m.len())
    }

    fn blocks_per_row(&self) -> usize {
        self.cols / BLOCK
    }

    /// Writes row `r` as f32 (an embedding lookup).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let nb = self.blocks_per_row();
        for b in 0..nb {
            let blk = r * nb + b;
            let d = self.d[blk];
            let dst = &mut out[b * BLOCK..(b + 1) * BLOCK];
            match self.format {
                QuantFormat::Q8_0 => {
                    let q = &self.qs[blk * BLOCK..(blk + 1) * BLOCK];
                    for (o, &v) in dst.iter_mut().zip(q) {
                        *o = d * v as i8 as f32;
                    }
                }
                QuantFormat::Q4_1 => {
                    let (q, m) = (&self.qs[blk * 16..(blk + 1) * 16], self.m[blk]);
                    for (j, &v) in q.iter().enumerate() {
                        dst[j] = d * (v & 0x0F) as f32 + m;
                        dst[j + 16] = d * (v >> 4) as f32 + m;
                    }
                }
            }
        }
    }

    /// `out[i, j] = sum_k x[i, k] * w[j, k]` for the `m` rows of `x`
    /// (`[m, cols]`); `out` is `[m, rows]`.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        assert_eq!(x.len(), m * self.cols, "activation shape");
        assert_eq!(out.len(), m * self.rows, "output shape");
        if m == 0 {
            return;
        }
        let acts = QuantizedRows::quantize(x, m, self.cols);
        self.matmul_quantized(&acts, out);
    }

    /// As [`matmul`](Self::matmul) with activations already quantized (one
    /// quantization serves several matrices with the same input).
    pub fn matmul_quantized(&self, acts: &QuantizedRows, out: &mut [f32]) {
        let m = acts.rows();
        assert_eq!(acts.cols(), self.cols, "activation columns");
        assert_eq!(out.len(), m * self.rows, "output shape");
        // A task is a tile of weight rows against every activation row; it
        // owns that tile's columns of every output row.
        let tile = tile_rows(self.rows);
        let mut tiles: Vec<Vec<&mut [f32]>> = (0..self.rows.div_ceil(tile))
            .map(|_| Vec::with_capacity(m))
            .collect();
        for row in out.chunks_exact_mut(self.rows) {
            for (t, piece) in row.chunks_mut(tile).enumerate() {
                tiles[t].push(piece);
            }
        }
        let kernel = dot::select();
        tiles
            .into_par_iter()
            .enumerate()
            .for_each(|(t, mut outs)| kernel.tile(self, t * tile, acts, &mut outs));
    }

    /// Row `j`'s blocks.
    fn weight_row(&self, j: usize) -> dot::WeightRow<'_> {
        let nb = self.blocks_per_row();
        let qsb = self.format.qs_bytes();
        dot::WeightRow {
            qs: &self.qs[j * nb * qsb..(j + 1) * nb * qsb],
            d: &self.d[j * nb..(j + 1) * nb],
            m: if self.format == QuantFormat::Q4_1 {
                &self.m[j * nb..(j + 1) * nb]
            } else {
                &[]
            },
        }
    }
}

/// Weight rows per parallel task: enough tasks to balance the threads,
/// few enough to keep the scheduling cost small.
fn tile_rows(rows: usize) -> usize {
    let tasks = 8 * rayon::current_num_threads().max(1);
    rows.div_ceil(tasks).clamp(8, 256)
}

#[cfg(test)]
mod tests;
