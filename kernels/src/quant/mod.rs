//! Quantized matrix times a batch of activation rows (CPU).
//!
//! candle's quantized matmul multiplies one activation row at a time against
//! the whole weight matrix, so a decode step of 16 sequences streams every
//! weight 16 times, and it has no SIMD kernel at all for Q4_1. Here each
//! weight block is loaded (and unpacked) once and multiplied with every row
//! of the batch while it sits in registers.
//!
//! Weights keep their GGUF values and scales (Q8_0, Q4_1, Q5_0, Q4_K, Q5_K,
//! Q6_K: `format.rs`), rearranged at load (`ggml.rs`, `layout.rs`) and
//! stored in panels of eight interleaved rows (`panel.rs`). Activations are
//! quantized per row to 8 bits in blocks of 32 (as llama.cpp and candle do;
//! `activations/`), and each row's arithmetic is the same whatever else is
//! in the batch: a sequence's result does not depend on its batch.

mod activations;
mod dot;
mod format;
mod ggml;
mod layout;
mod panel;

use rayon::prelude::*;

pub use activations::QuantizedRows;
pub use format::QuantFormat;
use panel::Blocks;
pub use panel::PANEL;

/// Values per activation block, and per block of Q8_0, Q4_1 and Q5_0.
pub const BLOCK: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct QuantError(String);

/// A `[rows, cols]` weight matrix in blocks along `cols` (32 values, or 256
/// for K-quants), with the quantized values, scales and minimums in
/// separate arrays, rows in interleaved panels of eight (`panel.rs`).
#[derive(Debug, Clone)]
pub struct QMatrix {
    format: QuantFormat,
    rows: usize,
    cols: usize,
    /// Values, scales and minimums (where the format has them), packed in
    /// panels.
    blocks: Blocks,
}

impl QMatrix {
    /// Reads the blocks of a GGUF tensor (`rows * cols / block_len` blocks,
    /// row-major), keeping every value and scale as stored.
    pub fn from_ggml(
        format: QuantFormat,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<Self, QuantError> {
        let len = format.block_len();
        if !cols.is_multiple_of(len) {
            return Err(QuantError(format!(
                "{cols} columns are not a multiple of {len} ({format:?})"
            )));
        }
        let nblocks = rows * cols / len;
        let bb = format.ggml_block_bytes();
        if bytes.len() != nblocks * bb {
            return Err(QuantError(format!(
                "{} bytes for {rows}x{cols} {format:?} (expected {})",
                bytes.len(),
                nblocks * bb
            )));
        }
        let blocks = ggml::decode(format, bytes);
        Ok(Self::from_row_major(format, rows, cols, &blocks))
    }

    fn from_row_major(format: QuantFormat, rows: usize, cols: usize, blocks: &Blocks) -> Self {
        Self {
            format,
            rows,
            cols,
            blocks: panel::pack(format, rows, cols / format.block_len(), blocks),
        }
    }

    fn to_row_major(&self) -> Blocks {
        panel::unpack(self.format, self.rows, self.blocks_per_row(), &self.blocks)
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
        let mut all = Blocks::default();
        for p in parts {
            let rm = p.to_row_major();
            all.qs.extend(rm.qs);
            all.d.extend(rm.d);
            all.m.extend(rm.m);
        }
        let rows = parts.iter().map(|p| p.rows).sum();
        Ok(Self::from_row_major(first.format, rows, first.cols, &all))
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
        self.blocks.qs.len() + 4 * (self.blocks.d.len() + self.blocks.m.len())
    }

    fn blocks_per_row(&self) -> usize {
        self.cols / self.format.block_len()
    }

    /// Writes row `r` as f32 (an embedding lookup), with the same bits as
    /// llama.cpp's and candle's dequantization of the GGUF blocks.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let len = self.format.block_len();
        let panel = self.panel(r / PANEL);
        for (b, out) in out.chunks_exact_mut(len).enumerate() {
            let (d, m) = (self.scale(r, b), self.min(r, b));
            let byte = |o| panel::byte(self.format, panel.qs, b, r % PANEL, o);
            for (c, o) in out.iter_mut().enumerate() {
                *o = layout::weight(self.format, byte, d, m, c);
            }
        }
    }

    /// Scale of row `r`'s block `b`.
    fn scale(&self, r: usize, b: usize) -> f32 {
        self.blocks.d[self.scale_index(r, b)]
    }

    /// Minimum of row `r`'s block `b` (0 where the format has none).
    fn min(&self, r: usize, b: usize) -> f32 {
        self.blocks.m.get(self.scale_index(r, b)).copied().unwrap_or(0.0)
    }

    fn scale_index(&self, r: usize, b: usize) -> usize {
        (r / PANEL * self.blocks_per_row() + b) * PANEL + r % PANEL
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
        // A task is a tile of weight rows (whole panels) against every
        // activation row; it owns that tile's columns of every output row.
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

    /// Panel `p`'s blocks: eight rows' values, scales and minimums.
    fn panel(&self, p: usize) -> dot::Panel<'_> {
        let nb = self.blocks_per_row();
        let qsb = nb * panel::block_bytes(self.format);
        let sc = nb * PANEL;
        dot::Panel {
            qs: &self.blocks.qs[p * qsb..(p + 1) * qsb],
            d: &self.blocks.d[p * sc..(p + 1) * sc],
            m: if self.format.has_min() {
                &self.blocks.m[p * sc..(p + 1) * sc]
            } else {
                &[]
            },
        }
    }
}

/// Weight rows per parallel task (whole panels): enough tasks to balance
/// the threads, few enough to keep the scheduling cost small.
fn tile_rows(rows: usize) -> usize {
    let tasks = 8 * rayon::current_num_threads().max(1);
    rows.div_ceil(tasks).clamp(PANEL, 256).next_multiple_of(PANEL)
}

#[cfg(test)]
mod tests;
