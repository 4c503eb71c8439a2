//! f32 vector primitives: the dot product of the index's (HNSW) distances
//! and the MLP's `silu(g) * u`. Each runs its AVX2 + FMA version (`x86.rs`;
//! the dot an AVX-512 one first) when the CPU has them (`cpu.rs`), else the
//! portable loop (`portable.rs`) the compiler vectorises for the baseline
//! target.

pub(crate) mod portable;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// `sum a[i] * b[i]` over the shorter length.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::features().avx512f {
        // SAFETY: AVX-512F was detected; the slices have equal length.
        #[allow(unsafe_code)]
        return unsafe { x86::dot_avx512(a, b) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::features().avx2_fma {
        // SAFETY: AVX2 and FMA were detected; the slices have equal length.
        #[allow(unsafe_code)]
        return unsafe { x86::dot(a, b) };
    }
    portable::dot(a, b)
}

/// A hint to start loading the first cache lines of `v`: the HNSW search
/// calls it for the next neighbour's vector while it scores the current
/// one. Does nothing off x86-64.
#[inline]
pub fn prefetch(v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    x86::prefetch(v);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

/// `out[i] = silu(g[i]) * u[i]` with `silu(x) = x / (1 + e^-x)`. The AVX2
/// path uses an eight-lane exp (within a few ulp of libm's `expf`).
pub fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) {
    assert!(g.len() == u.len() && u.len() == out.len());
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::features().avx2_fma {
        // SAFETY: AVX2 and FMA were detected; lengths checked above.
        #[allow(unsafe_code)]
        return unsafe { x86::silu_mul(g, u, out) };
    }
    portable::silu_mul(g, u, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_and_portable_dots_agree_at_every_length() {
        for n in 0..100 {
            let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 11 % 13) as f32 - 6.0) / 4.0).collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let mut all = vec![dot(&a, &b), portable::dot(&a, &b)];
            #[cfg(target_arch = "x86_64")]
            {
                let cpu = crate::cpu::features();
                #[allow(unsafe_code)]
                // SAFETY: each runs only when the CPU has its features.
                unsafe {
                    if cpu.avx2_fma {
                        all.push(x86::dot(&a, &b));
                    }
                    if cpu.avx512f {
                        all.push(x86::dot_avx512(&a, &b));
                    }
                }
            }
            for got in all {
                assert!((got as f64 - exact).abs() < 1e-4, "n {n}: {got} vs {exact}");
            }
        }
    }

    #[test]
    fn silu_mul_matches_the_formula() {
        let g: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.7).collect();
        let u: Vec<f32> = (0..37).map(|i| 1.0 + i as f32 * 0.1).collect();
        let mut out = vec![0f32; 37];
        silu_mul(&g, &u, &mut out);
        for ((o, g), u) in out.iter().zip(&g).zip(&u) {
            let want = (*g as f64) / (1.0 + (-*g as f64).exp()) * *u as f64;
            assert!(
                (*o as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{o} vs {want}"
            );
        }
    }
}
