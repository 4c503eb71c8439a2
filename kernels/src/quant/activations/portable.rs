//! Portable version of the activation block quantizer (the reference for
//! `x86.rs`).

/// `round(v / scale)` (ties to even) with `scale = max|v| / 127`; returns
/// the scale and the sum of the quantized values.
pub(super) fn quantize_block(src: &[f32], dst: &mut [i8]) -> (f32, i32) {
    let amax = src.iter().fold(0f32, |a, v| a.max(v.abs()));
    let scale = amax / 127.0;
    let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in dst.iter_mut().zip(src) {
        *q = (v * inv).round_ties_even() as i8;
        sum += *q as i32;
    }
    (scale, sum)
}
