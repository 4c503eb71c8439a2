//! llama.cpp's `dequantize_row_*` loops, written out on GGUF bytes: an
//! independent reference for the conversion to the kernels' layout.

use half::f16;

use crate::quant::QuantFormat;

fn half(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

fn scale_min(j: usize, q: &[u8]) -> (f32, f32) {
    let (d, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    };
    (d as f32, m as f32)
}

/// One GGUF block's weights, in column order.
pub fn dequantize_block(format: QuantFormat, x: &[u8]) -> Vec<f32> {
    let mut y = Vec::new();
    match format {
        QuantFormat::Q8_0 => y.extend(x[2..34].iter().map(|&q| q as i8 as f32 * half(x, 0))),
        QuantFormat::Q4_1 => {
            let (d, m) = (half(x, 0), half(x, 2));
            y.extend(x[4..20].iter().map(|&q| (q & 0xF) as f32 * d + m));
            y.extend(x[4..20].iter().map(|&q| (q >> 4) as f32 * d + m));
        }
        QuantFormat::Q5_0 => {
            let d = half(x, 0);
            let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
            y.resize(32, 0.0);
            for j in 0..16 {
                let xh0 = (((qh >> j) << 4) & 0x10) as u8;
                let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
                y[j] = (((x[6 + j] & 0x0F) | xh0) as i32 - 16) as f32 * d;
                y[j + 16] = (((x[6 + j] >> 4) | xh1) as i32 - 16) as f32 * d;
            }
        }
        QuantFormat::Q4K | QuantFormat::Q5K => {
            let five = format == QuantFormat::Q5K;
            let (d, min, scales) = (half(x, 0), half(x, 2), &x[4..16]);
            let (qh, mut ql) = if five {
                (&x[16..48], &x[48..])
            } else {
                (&x[..0], &x[16..])
            };
            let (mut u1, mut u2) = (1u8, 2u8);
            for is in (0..8).step_by(2) {
                let (sc1, m1) = scale_min(is, scales);
                let (sc2, m2) = scale_min(is + 1, scales);
                let (d1, m1, d2, m2) = (d * sc1, min * m1, d * sc2, min * m2);
                let high = |l: usize, u: u8| if five && qh[l] & u != 0 { 16.0 } else { 0.0 };
                y.extend((0..32).map(|l| d1 * ((ql[l] & 0xF) as f32 + high(l, u1)) - m1));
                y.extend((0..32).map(|l| d2 * ((ql[l] >> 4) as f32 + high(l, u2)) - m2));
                ql = &ql[32..];
                u1 <<= 2;
                u2 <<= 2;
            }
        }
        QuantFormat::Q6K => {
            let d = half(x, 208);
            y.resize(256, 0.0);
            for n in 0..2 {
                let (ql, qh) = (&x[64 * n..], &x[128 + 32 * n..]);
                let sc = |i: usize| x[192 + 8 * n + i] as i8 as f32;
                for l in 0..32 {
                    let is = l / 16;
                    let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
                    let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                    let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                    let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                    let ys = &mut y[128 * n..];
                    ys[l] = d * sc(is) * q1 as f32;
                    ys[l + 32] = d * sc(is + 2) * q2 as f32;
                    ys[l + 64] = d * sc(is + 4) * q3 as f32;
                    ys[l + 96] = d * sc(is + 6) * q4 as f32;
                }
            }
        }
    }
    y
}
