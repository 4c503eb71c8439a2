//! The weight layout the kernels read: rows in panels of eight, interleaved.
//!
//! In a panel, each block of 32 columns is stored as runs of 32 bytes that
//! each hold four consecutive values of all eight rows (row 0's four, row
//! 1's four, ...). One 256-bit load then feeds eight rows at once against
//! four activation values broadcast to every lane, and a block's integer
//! dot product for the eight rows ends up in the eight lanes of one register:
//! scales are applied lane-wise, with no horizontal sums.
//!
//! - Q8_0: run `k` (0..8) holds columns `4k..4k+4` of the block.
//! - Q4_1: run `k` (0..4) holds, per byte, column `4k+e` in the low nibble
//!   and column `16+4k+e` in the high nibble (llama.cpp packs a block's byte
//!   `j` as columns `j` and `j+16`, so a run is a permutation of its bytes).
//!
//! Scales and minimums are stored `[panel][block][8]`. Rows past the end of
//! the matrix (the last panel's padding) are zero.

use super::QuantFormat;

/// Rows per panel: the eight f32 lanes of a 256-bit register.
pub const PANEL: usize = 8;

/// Bytes of one panel's block (all eight rows).
pub(super) fn block_bytes(format: QuantFormat) -> usize {
    PANEL * format.qs_bytes()
}

/// A matrix's quantized values, scales and minimums (empty unless Q4_1),
/// in one of two layouts: llama.cpp's row-major block order (`qs` holds
/// each block's `qs_bytes` in GGUF order), or packed in panels ([`pack`]).
#[derive(Debug, Clone, Default)]
pub(super) struct Blocks {
    pub qs: Vec<u8>,
    pub d: Vec<f32>,
    pub m: Vec<f32>,
}

/// Where one row block sits in both layouts: its scale index row-major
/// (`blk`) and packed (`at`), and where its value bytes start in each.
struct Slot {
    blk: usize,
    at: usize,
    qs_row_major: usize,
    qs_packed: usize,
    runs: usize,
}

impl Slot {
    /// Each run of four value bytes: its offset row-major and packed.
    fn runs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.runs).map(|run| {
            (
                self.qs_row_major + run * 4,
                self.qs_packed + run * 32 + self.at % PANEL * 4,
            )
        })
    }
}

/// Every row block of a `rows x nb`-block matrix, in row-major order.
fn slots(format: QuantFormat, rows: usize, nb: usize) -> impl Iterator<Item = Slot> {
    let qsb = format.qs_bytes();
    (0..rows).flat_map(move |row| {
        let (p, r) = (row / PANEL, row % PANEL);
        (0..nb).map(move |b| {
            let blk = row * nb + b;
            Slot {
                blk,
                at: (p * nb + b) * PANEL + r,
                qs_row_major: blk * qsb,
                qs_packed: (p * nb + b) * block_bytes(format),
                runs: qsb / 4,
            }
        })
    })
}

/// An all-zero matrix of `blocks` row blocks and `bytes` value bytes.
fn zeroed(format: QuantFormat, blocks: usize, bytes: usize) -> Blocks {
    Blocks {
        qs: vec![0; bytes],
        d: vec![0.0; blocks],
        m: if format == QuantFormat::Q4_1 {
            vec![0.0; blocks]
        } else {
            Vec::new()
        },
    }
}

/// Packs `rows` rows of `nb` blocks into panels.
pub(super) fn pack(format: QuantFormat, rows: usize, nb: usize, src: &Blocks) -> Blocks {
    let panels = rows.div_ceil(PANEL);
    let mut out = zeroed(format, panels * nb * PANEL, panels * nb * block_bytes(format));
    for s in slots(format, rows, nb) {
        out.d[s.at] = src.d[s.blk];
        if let Some(&m) = src.m.get(s.blk) {
            out.m[s.at] = m;
        }
        for (from, to) in s.runs() {
            out.qs[to..to + 4].copy_from_slice(&src.qs[from..from + 4]);
        }
    }
    out
}

/// The inverse of [`pack`].
pub(super) fn unpack(format: QuantFormat, rows: usize, nb: usize, src: &Blocks) -> Blocks {
    let mut out = zeroed(format, rows * nb, rows * nb * format.qs_bytes());
    for s in slots(format, rows, nb) {
        out.d[s.blk] = src.d[s.at];
        if let Some(&m) = src.m.get(s.at) {
            out.m[s.blk] = m;
        }
        for (to, from) in s.runs() {
            out.qs[to..to + 4].copy_from_slice(&src.qs[from..from + 4]);
        }
    }
    out
}

/// Quantized value of `row`, column `c` of block `b` of a packed matrix.
pub(super) fn value(format: QuantFormat, nb: usize, qs: &[u8], row: usize, b: usize, c: usize) -> i32 {
    let (p, r) = (row / PANEL, row % PANEL);
    let base = (p * nb + b) * block_bytes(format);
    match format {
        QuantFormat::Q8_0 => qs[base + (c / 4) * 32 + r * 4 + c % 4] as i8 as i32,
        QuantFormat::Q4_1 => {
            let (half, cc) = (c / 16, c % 16);
            let byte = qs[base + (cc / 4) * 32 + r * 4 + cc % 4];
            (if half == 0 { byte & 0x0F } else { byte >> 4 }) as i32
        }
    }
}
