//! The weight formats the kernels read, and how big their blocks are: in a
//! GGUF file, and once converted to the kernels' own layout (`layout.rs`).

use super::BLOCK;

/// Values per K-quant super-block (llama.cpp's `QK_K`).
pub const SUPER_BLOCK: usize = 256;

/// How a weight block is stored (llama.cpp's formats, values as stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantFormat {
    /// 32 signed bytes times a scale: `w = d * q`.
    Q8_0,
    /// 32 nibbles, a scale and a minimum: `w = d * q + m`.
    Q4_1,
    /// 32 five-bit values and a scale: `w = d * (q - 16)`.
    Q5_0,
    /// 256 nibbles in 8 sub-blocks of 32, each with a 6-bit scale and
    /// minimum: `w = d * sc * q - dmin * m`.
    Q4K,
    /// Q4_K with five-bit values.
    Q5K,
    /// 256 six-bit values in 16 groups of 16, each with a signed 8-bit
    /// scale: `w = d * sc * (q - 32)`.
    Q6K,
}

impl QuantFormat {
    /// Every format, for tests and benches.
    pub const ALL: [Self; 6] = [
        Self::Q8_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q4K,
        Self::Q5K,
        Self::Q6K,
    ];

    /// Values per block along a row (a multiple of the activations' 32).
    pub fn block_len(self) -> usize {
        match self {
            Self::Q8_0 | Self::Q4_1 | Self::Q5_0 => BLOCK,
            Self::Q4K | Self::Q5K | Self::Q6K => SUPER_BLOCK,
        }
    }

    /// Bytes per block in a GGUF file.
    pub fn ggml_block_bytes(self) -> usize {
        match self {
            Self::Q8_0 => 2 + BLOCK,
            Self::Q4_1 => 4 + BLOCK / 2,
            Self::Q5_0 => 2 + 4 + BLOCK / 2,
            Self::Q4K => 2 + 2 + 12 + SUPER_BLOCK / 2,
            Self::Q5K => 2 + 2 + 12 + SUPER_BLOCK / 8 + SUPER_BLOCK / 2,
            Self::Q6K => SUPER_BLOCK / 2 + SUPER_BLOCK / 4 + SUPER_BLOCK / 16 + 2,
        }
    }

    /// Byte offsets of a GGUF block's f16 fields: its scale `d`, then its
    /// minimum (Q4_1) or `dmin` (Q4_K, Q5_K) where it has one. Benches and
    /// tests that fill blocks with random bytes set these to finite values.
    pub fn ggml_f16_fields(self) -> &'static [usize] {
        match self {
            Self::Q8_0 | Self::Q5_0 => &[0],
            Self::Q4_1 | Self::Q4K | Self::Q5K => &[0, 2],
            Self::Q6K => &[208],
        }
    }

    /// Bytes of one row's block in the kernels' layout (`layout.rs`),
    /// besides its f32 scale and minimum: a multiple of four.
    pub(super) fn qs_bytes(self) -> usize {
        match self {
            Self::Q8_0 => BLOCK,
            Self::Q4_1 => BLOCK / 2,
            Self::Q5_0 => BLOCK / 2 + 4,
            Self::Q4K => SUPER_BLOCK / 2 + 16,
            Self::Q5K => SUPER_BLOCK / 2 + SUPER_BLOCK / 8 + 16,
            Self::Q6K => SUPER_BLOCK / 2 + SUPER_BLOCK / 4 + 16,
        }
    }

    /// Whether a block has a minimum (an f32 besides its scale).
    pub(super) fn has_min(self) -> bool {
        matches!(self, Self::Q4_1 | Self::Q4K | Self::Q5K)
    }

    /// Bytes held per weight once loaded: values, sub-block scales, and the
    /// f32 scale (and minimum) of each block.
    pub fn bytes_per_weight(self) -> f64 {
        let floats = if self.has_min() { 8 } else { 4 };
        (self.qs_bytes() + floats) as f64 / self.block_len() as f64
    }
}
