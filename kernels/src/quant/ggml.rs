//! GGUF blocks (llama.cpp's `block_q*` structs) to the kernels' layout
//! (`layout.rs`), row-major: every value, scale and minimum as stored.

use half::f16;

use super::format::SUPER_BLOCK;
use super::panel::Blocks;
use super::{layout, QuantFormat, BLOCK};

fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// llama.cpp's `get_scale_min_k4`: sub-block `j`'s six-bit scale and
/// minimum from the 12 packed bytes of a Q4_K/Q5_K super-block.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 15) | (q[j - 4] >> 6) << 4,
            (q[j + 4] >> 4) | (q[j] >> 6) << 4,
        )
    }
}

/// Converts whole GGUF blocks (`bytes.len()` a multiple of the block size).
pub(super) fn decode(format: QuantFormat, bytes: &[u8]) -> Blocks {
    let bb = format.ggml_block_bytes();
    let n = bytes.len() / bb;
    let mut out = Blocks {
        qs: Vec::with_capacity(n * format.qs_bytes()),
        d: Vec::with_capacity(n),
        m: Vec::with_capacity(if format.has_min() { n } else { 0 }),
    };
    let mut q = [0u8; SUPER_BLOCK];
    for b in bytes.chunks_exact(bb) {
        match format {
            QuantFormat::Q8_0 => {
                out.d.push(half_at(b, 0));
                out.qs.extend_from_slice(&b[2..]);
            }
            QuantFormat::Q4_1 => {
                out.d.push(half_at(b, 0));
                out.m.push(half_at(b, 2));
                out.qs.extend_from_slice(&b[4..]);
            }
            QuantFormat::Q5_0 => {
                let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                let ql = &b[6..];
                for j in 0..BLOCK / 2 {
                    q[j] = ql[j] & 15 | ((qh >> j) as u8 & 1) << 4;
                    q[j + 16] = ql[j] >> 4 | ((qh >> (j + 16)) as u8 & 1) << 4;
                }
                out.d.push(half_at(b, 0));
                layout::encode(format, &q[..BLOCK], &[], &[], &mut out.qs);
            }
            QuantFormat::Q4K | QuantFormat::Q5K => {
                let five = format == QuantFormat::Q5K;
                let scales = &b[4..16];
                let (qh, ql) = if five {
                    (&b[16..48], &b[48..])
                } else {
                    (&[][..], &b[16..])
                };
                let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
                for s in 0..8 {
                    (sc[s], mn[s]) = scale_min_k4(s, scales);
                    // Sub-blocks 2i and 2i+1 are the low and high nibbles
                    // of bytes 32i..32i+32; the fifth bit of value l of
                    // sub-block s is bit s of qh[l].
                    for l in 0..BLOCK {
                        let nibble = ql[32 * (s / 2) + l] >> (4 * (s % 2)) & 15;
                        let fifth = if five { (qh[l] >> s & 1) << 4 } else { 0 };
                        q[BLOCK * s + l] = nibble | fifth;
                    }
                }
                out.d.push(half_at(b, 0));
                out.m.push(-half_at(b, 2));
                layout::encode(format, &q, &sc, &mn, &mut out.qs);
            }
            QuantFormat::Q6K => {
                let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
                // Each half of 128 values: value 32t + l takes the low
                // (t < 2) or high nibble of ql[64h + 32(t % 2) + l] and
                // bits 2t..2t+2 of qh[32h + l].
                for h in 0..2 {
                    for t in 0..4 {
                        for l in 0..BLOCK {
                            let nibble = ql[64 * h + 32 * (t % 2) + l] >> (4 * (t / 2)) & 15;
                            let high = qh[32 * h + l] >> (2 * t) & 3;
                            q[128 * h + 32 * t + l] = nibble | high << 4;
                        }
                    }
                }
                out.d.push(half_at(b, 208));
                layout::encode(format, &q, scales, &[], &mut out.qs);
            }
        }
    }
    out
}
