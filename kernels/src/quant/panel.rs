//! The weight layout the kernels read: rows in panels of eight, interleaved.
//!
//! In a panel, each block is stored as runs of 32 bytes that each hold four
//! consecutive bytes of all eight rows' blocks (row 0's four, row 1's four,
//! ...), in the byte order of `layout.rs`. One 256-bit load then feeds
//! eight rows at once against four activation values broadcast to every
//! lane, and a block's integer dot product for the eight rows ends up in
//! the eight lanes of one register: scales are applied lane-wise, with no
//! horizontal sums.
//!
//! - Q8_0: run `k` (0..8) holds columns `4k..4k+4` of the block.
//! - Nibble formats: run `k` of a sub-block of 32 holds, per byte, column
//!   `4k+e` in the low nibble and column `16+4k+e` in the high nibble; the
//!   runs after the nibbles hold high bits and sub-block scales, four bytes
//!   of each row per run (`layout.rs`).
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

/// A matrix's quantized values, scales and minimums (empty unless the
/// format has them), in one of two layouts: row-major block order (`qs`
/// holds each block's `qs_bytes` in `layout.rs` order), or packed in panels
/// ([`pack`]).
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
        m: if format.has_min() {
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

/// Byte `o` (row-major layout) of row `r`'s block `b` in a panel's bytes.
pub(super) fn byte(format: QuantFormat, panel: &[u8], b: usize, r: usize, o: usize) -> u8 {
    panel[b * block_bytes(format) + o / 4 * 32 + r * 4 + o % 4]
}
