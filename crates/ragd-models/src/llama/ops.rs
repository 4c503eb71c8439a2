//! The element-wise pieces of the Llama forward, on row-major slices.

use rayon::prelude::*;

/// RMS normalisation of each `weight.len()`-long row of `x` into `out`
/// (the same arithmetic as candle's `rms_norm`).
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    for (row, dst) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let sum2: f32 = row.iter().map(|v| v * v).sum();
        let norm = (sum2 / dim as f32 + eps).sqrt();
        for ((o, &v), &w) in dst.iter_mut().zip(row).zip(weight) {
            *o = v / norm * w;
        }
    }
}

/// `silu(gate) * up` for rows laid out `[gate | up]` (each `ff` long).
/// Rows run in parallel: in a large batch the exponentials would otherwise
/// leave all but one thread idle between two matmuls.
pub fn silu_mul(gate_up: &[f32], ff: usize) -> Vec<f32> {
    let mut out = vec![0f32; gate_up.len() / 2];
    out.par_chunks_mut(ff)
        .zip(gate_up.par_chunks_exact(2 * ff))
        .for_each(|(dst, row)| {
            let (g, u) = row.split_at(ff);
            ragd_kernels::vector::silu_mul(g, u, dst);
        });
    out
}

/// `x += y`.
pub fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_gives_unit_rms_rows_times_the_weight() {
        let x = [3.0, 4.0, -1.0, 1.0];
        let mut out = [0.0; 4];
        rms_norm(&x, &[1.0, 2.0], 0.0, &mut out);
        let r = (12.5f32).sqrt();
        assert_eq!(out, [3.0 / r, 8.0 / r, -1.0, 2.0]);
    }

    #[test]
    fn silu_mul_pairs_gate_with_up() {
        let out = silu_mul(&[0.0, 1.0, 5.0, 2.0], 2);
        assert_eq!(out[0], 0.0);
        assert!((out[1] - 2.0 * (1.0 / (1.0 + (-1.0f32).exp()))).abs() < 1e-6);
    }
}
