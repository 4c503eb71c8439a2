//! One row's block in the kernels' layout, before `panel.rs` interleaves
//! eight rows: how its bytes are written from integer values (`encode`),
//! and read back (`value`, `scale`, `min`, `weight`).
//!
//! Values are kept as stored in the GGUF file (same integers, same scales):
//! only where the bits sit changes, so that a 256-bit load of a panel run
//! (`panel.rs`) gives the AVX2 kernel whole columns.
//!
//! - Q8_0: 32 signed bytes. Q4_1: 16 nibble bytes.
//! - Nibbles (every other format): each sub-block of 32 values `v` is 16
//!   bytes, byte `j` = `v[j] & 15 | (v[j + 16] & 15) << 4` (llama.cpp's
//!   Q4_1 order), so four-byte run `k` of a sub-block holds columns
//!   `4k..4k+4` in its low nibbles and `16+4k..16+4k+4` in its high ones.
//! - Fifth bits (Q5_0, Q5_K): 4 bytes per sub-block; bit `k` of byte `e` is
//!   bit 4 of `v[4k + e]` and bit `4 + k` is bit 4 of `v[16 + 4k + e]`: one
//!   run, shifted right by one per nibble run, lines them up.
//! - Sixth and fifth bits (Q6_K): 8 bytes per sub-block; bits `2k..2k+2` of
//!   byte `e` are bits 4-5 of `v[4k + e]`, of byte `4 + e` those of
//!   `v[16 + 4k + e]`.
//!
//! Whole blocks: Q5_0 is nibbles then fifth bits (20 bytes). K-quant
//! super-blocks are the 8 sub-blocks' nibbles (128 bytes), their high bits
//! (Q5_K 32, Q6_K 64), then the sub-block scales: Q4_K/Q5_K 8 six-bit
//! scales and 8 six-bit minimums (one byte each), Q6_K 16 signed scales of
//! 16 values each. A block's f32 scale `d` (and minimum `m`, for Q4_K/Q5_K
//! `-dmin`) is kept apart (`panel::Blocks`).

use super::{QuantFormat, BLOCK};

/// Where a block's parts start (bytes, row-major layout).
fn nibbles(s: usize) -> usize {
    s * BLOCK / 2
}

fn high_bits(format: QuantFormat, s: usize) -> usize {
    match format {
        QuantFormat::Q5_0 => BLOCK / 2,
        QuantFormat::Q5K => 128 + 4 * s,
        QuantFormat::Q6K => 128 + 8 * s,
        _ => unreachable!("{format:?} has no high bits"),
    }
}

fn scales(format: QuantFormat) -> usize {
    match format {
        QuantFormat::Q4K => 128,
        QuantFormat::Q5K => 160,
        QuantFormat::Q6K => 192,
        _ => unreachable!("{format:?} has no sub-block scales"),
    }
}

/// Writes one row's block from its values (`block_len` of them, as stored:
/// unsigned, or Q8_0's signed bytes), sub-block scales and minimums (empty
/// where the format has none), appending `format.qs_bytes()` bytes.
pub(super) fn encode(format: QuantFormat, q: &[u8], scales: &[u8], mins: &[u8], out: &mut Vec<u8>) {
    debug_assert_eq!(q.len(), format.block_len());
    let start = out.len();
    if format == QuantFormat::Q8_0 {
        out.extend_from_slice(q);
        return;
    }
    for v in q.chunks_exact(BLOCK) {
        out.extend((0..BLOCK / 2).map(|j| v[j] & 15 | (v[j + BLOCK / 2] & 15) << 4));
    }
    let fifth = |v: &[u8], e: usize| {
        (0..4).fold(0u8, |b, k| {
            b | (v[4 * k + e] >> 4 & 1) << k | (v[16 + 4 * k + e] >> 4 & 1) << (4 + k)
        })
    };
    let sixth = |v: &[u8], e: usize| (0..4).fold(0u8, |b, k| b | (v[4 * k + e] >> 4 & 3) << (2 * k));
    for v in q.chunks_exact(BLOCK) {
        match format {
            QuantFormat::Q5_0 | QuantFormat::Q5K => out.extend((0..4).map(|e| fifth(v, e))),
            QuantFormat::Q6K => {
                out.extend((0..4).map(|e| sixth(v, e)));
                out.extend((0..4).map(|e| sixth(&v[16..], e)));
            }
            _ => {}
        }
    }
    out.extend_from_slice(scales);
    out.extend_from_slice(mins);
    debug_assert_eq!(out.len() - start, format.qs_bytes());
}

/// Column `c`'s stored integer in a block whose byte `o` is `byte(o)`.
pub(super) fn value(format: QuantFormat, byte: impl Fn(usize) -> u8, c: usize) -> i32 {
    if format == QuantFormat::Q8_0 {
        return byte(c) as i8 as i32;
    }
    let (s, cc) = (c / BLOCK, c % BLOCK);
    let (half, k, e) = (cc / 16, cc % 16 / 4, cc % 4);
    let nibble = byte(nibbles(s) + cc % 16) >> (4 * half) & 15;
    let high = match format {
        QuantFormat::Q5_0 | QuantFormat::Q5K => (byte(high_bits(format, s) + e) >> (4 * half + k) & 1) << 4,
        QuantFormat::Q6K => (byte(high_bits(format, s) + 4 * half + e) >> (2 * k) & 3) << 4,
        _ => 0,
    };
    (nibble | high) as i32
}

/// The integer scale of sub-block `s` (Q6_K: of group `s` of 16 values).
pub(super) fn scale(format: QuantFormat, byte: impl Fn(usize) -> u8, s: usize) -> i32 {
    match format {
        QuantFormat::Q6K => byte(scales(format) + s) as i8 as i32,
        _ => byte(scales(format) + s) as i32,
    }
}

/// The integer minimum of sub-block `s` (Q4_K, Q5_K).
pub(super) fn min(format: QuantFormat, byte: impl Fn(usize) -> u8, s: usize) -> i32 {
    byte(scales(format) + 8 + s) as i32
}

/// Column `c`'s weight, computed as llama.cpp and candle dequantize it
/// (the same f32 operations, so the same bits).
pub(super) fn weight(format: QuantFormat, byte: impl Fn(usize) -> u8, d: f32, m: f32, c: usize) -> f32 {
    let q = value(format, &byte, c);
    match format {
        QuantFormat::Q8_0 => d * q as f32,
        QuantFormat::Q4_1 => d * q as f32 + m,
        QuantFormat::Q5_0 => (q - 16) as f32 * d,
        QuantFormat::Q4K | QuantFormat::Q5K => {
            let s = c / BLOCK;
            d * scale(format, &byte, s) as f32 * q as f32 + m * min(format, &byte, s) as f32
        }
        QuantFormat::Q6K => d * scale(format, &byte, c / 16) as f32 * (q - 32) as f32,
    }
}
