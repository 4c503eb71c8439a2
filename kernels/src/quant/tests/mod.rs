use half::f16;

use super::dot::{self, Kernel};
use super::format::SUPER_BLOCK;
use super::*;

mod ggml_reference;

/// A small deterministic generator (no dependency for tests).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    fn uniform(&mut self) -> f32 {
        self.next() as f32 / (1u64 << 31) as f32 * 2.0 - 1.0
    }
}

/// Random GGUF blocks: every value, high-bit and sub-scale byte random,
/// the f16 scale in [0.01, 0.03) and the minimum (or `dmin`) small.
fn random_ggml(format: QuantFormat, rows: usize, cols: usize, rng: &mut Lcg) -> Vec<u8> {
    let bb = format.ggml_block_bytes();
    let mut bytes: Vec<u8> = (0..rows * cols / format.block_len() * bb)
        .map(|_| rng.next() as u8)
        .collect();
    let fields = format.ggml_f16_fields();
    let (d_at, m_at) = (fields[0], fields.get(1).copied());
    // K-quant scales multiply 6- or 8-bit sub-block scales: keep weights O(1).
    let unit = if format.block_len() == BLOCK { 1.0 } else { 0.02 };
    for b in bytes.chunks_exact_mut(bb) {
        let d = f16::from_f32(unit * (0.01 + 0.02 * rng.uniform().abs()));
        b[d_at..d_at + 2].copy_from_slice(&d.to_le_bytes());
        if let Some(at) = m_at {
            let m = 0.1 * rng.uniform().abs();
            // Q4_1 stores the minimum itself, K-quants `dmin` (subtracted).
            let m = if format == QuantFormat::Q4_1 { -m } else { unit * m };
            b[at..at + 2].copy_from_slice(&f16::from_f32(m).to_le_bytes());
        }
    }
    bytes
}

fn random_rows(m: usize, k: usize, rng: &mut Lcg) -> Vec<f32> {
    (0..m * k).map(|_| 3.0 * rng.uniform()).collect()
}

/// The exact value the kernels compute up to f32 rounding: dequantized
/// weights times dequantized activations, summed in f64; and, per output,
/// the sum of the products' magnitudes (the scale errors are relative to).
fn reference(w: &QMatrix, acts: &QuantizedRows) -> (Vec<f64>, Vec<f64>) {
    let (m, n, k) = (acts.rows(), w.rows(), w.cols());
    let x = acts.dequantize();
    let mut row = vec![0f32; k];
    let (mut out, mut mag) = (vec![0f64; m * n], vec![0f64; m * n]);
    for j in 0..n {
        w.dequantize_row(j, &mut row);
        for i in 0..m {
            let xi = &x[i * k..(i + 1) * k];
            let a = acts.row(i);
            // A Q4_1 minimum multiplies the block's stored, f16-rounded
            // `d * sum(q)` (as in llama.cpp), not the exact sum.
            let min = |c: usize| {
                if w.format == QuantFormat::Q4_1 {
                    w.min(j, c / BLOCK) as f64
                } else {
                    0.0
                }
            };
            out[i * n + j] = (0..k)
                .map(|c| (row[c] as f64 - min(c)) * xi[c] as f64)
                .sum::<f64>()
                + (0..k / BLOCK)
                    .map(|b| min(b * BLOCK) * a.s[b] as f64)
                    .sum::<f64>();
            mag[i * n + j] = (0..k).map(|c| (row[c] as f64 * xi[c] as f64).abs()).sum();
        }
    }
    (out, mag)
}

fn kernels() -> Vec<Kernel> {
    let mut all = vec![Kernel::Portable];
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::features().avx2_fma {
        all.push(Kernel::Avx2);
    }
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::features().avx2_fma && crate::cpu::features().avx512_vnni {
        all.push(Kernel::Avx512Vnni);
    }
    all
}

fn run(kernel: Kernel, w: &QMatrix, acts: &QuantizedRows) -> Vec<f32> {
    let (m, n) = (acts.rows(), w.rows());
    let mut out = vec![0f32; m * n];
    let mut outs: Vec<&mut [f32]> = out.chunks_exact_mut(n).collect();
    kernel.tile(w, 0, acts, &mut outs);
    out
}

/// A random `rows x cols` matrix of `format` (`cols` a multiple of 256).
fn random_matrix(format: QuantFormat, rows: usize, cols: usize, rng: &mut Lcg) -> QMatrix {
    QMatrix::from_ggml(format, rows, cols, &random_ggml(format, rows, cols, rng)).unwrap()
}

#[test]
fn every_kernel_computes_the_quantized_product() {
    let mut rng = Lcg(7);
    for format in QuantFormat::ALL {
        // 13 rows: a full panel and a padded one; batches of 1 and 7.
        let (n, k) = (13, 2 * SUPER_BLOCK);
        let w = random_matrix(format, n, k, &mut rng);
        for m in [1, 7] {
            let acts = QuantizedRows::quantize(&random_rows(m, k, &mut rng), m, k);
            let (want, mag) = reference(&w, &acts);
            for kernel in kernels() {
                let got = run(kernel, &w, &acts);
                for ((g, r), s) in got.iter().zip(&want).zip(&mag) {
                    assert!(
                        (*g as f64 - r).abs() <= 1e-5 * s,
                        "{format:?} {kernel:?} batch {m}: {g} vs {r} (scale {s})"
                    );
                }
            }
        }
    }
}

#[test]
fn quantized_product_is_close_to_the_float_product() {
    let mut rng = Lcg(11);
    for format in QuantFormat::ALL {
        let (m, n, k) = (3, 5, SUPER_BLOCK);
        let w = random_matrix(format, n, k, &mut rng);
        let x = random_rows(m, k, &mut rng);
        let mut out = vec![0f32; m * n];
        w.matmul(&x, m, &mut out);
        let mut row = vec![0f32; k];
        for j in 0..n {
            w.dequantize_row(j, &mut row);
            for i in 0..m {
                let exact: f32 = (0..k).map(|c| row[c] * x[i * k + c]).sum();
                let scale: f32 = (0..k).map(|c| (row[c] * x[i * k + c]).abs()).sum();
                assert!(
                    (out[i * n + j] - exact).abs() < 0.02 * scale,
                    "{format:?}: {} vs {exact}",
                    out[i * n + j]
                );
            }
        }
    }
}

#[test]
fn a_row_gets_the_same_bits_alone_and_in_any_batch() {
    let mut rng = Lcg(3);
    for format in QuantFormat::ALL {
        let (m, n, k) = (11, 300, 3 * SUPER_BLOCK);
        let w = random_matrix(format, n, k, &mut rng);
        let x = random_rows(m, k, &mut rng);
        let mut batch = vec![0f32; m * n];
        w.matmul(&x, m, &mut batch);
        for i in 0..m {
            let mut alone = vec![0f32; n];
            w.matmul(&x[i * k..(i + 1) * k], 1, &mut alone);
            assert_eq!(alone, batch[i * n..(i + 1) * n], "{format:?} row {i}");
        }
        let mut pair = vec![0f32; 2 * n];
        w.matmul(&x[3 * k..5 * k], 2, &mut pair);
        assert_eq!(pair, batch[3 * n..5 * n], "{format:?}");
    }
}

#[test]
fn concatenated_rows_multiply_like_the_parts() {
    let mut rng = Lcg(5);
    for format in [QuantFormat::Q8_0, QuantFormat::Q4K, QuantFormat::Q6K] {
        let k = SUPER_BLOCK;
        let a = random_matrix(format, 3, k, &mut rng);
        let b = random_matrix(format, 5, k, &mut rng);
        let ab = QMatrix::concat_rows(&[a.clone(), b.clone()]).unwrap();
        let x = random_rows(2, k, &mut rng);
        let (mut oa, mut ob, mut oab) = (vec![0f32; 6], vec![0f32; 10], vec![0f32; 16]);
        a.matmul(&x, 2, &mut oa);
        b.matmul(&x, 2, &mut ob);
        ab.matmul(&x, 2, &mut oab);
        for i in 0..2 {
            assert_eq!(oab[i * 8..i * 8 + 3], oa[i * 3..i * 3 + 3], "{format:?}");
            assert_eq!(oab[i * 8 + 3..i * 8 + 8], ob[i * 5..i * 5 + 5], "{format:?}");
        }
    }
    let mut rng = Lcg(6);
    let (q4, q6) = (
        random_matrix(QuantFormat::Q4K, 2, SUPER_BLOCK, &mut rng),
        random_matrix(QuantFormat::Q6K, 2, SUPER_BLOCK, &mut rng),
    );
    assert!(QMatrix::concat_rows(&[q4, q6]).is_err(), "formats differ");
}

#[test]
fn wrong_sizes_are_refused() {
    assert!(QMatrix::from_ggml(QuantFormat::Q8_0, 2, 33, &[0; 100]).is_err());
    assert!(QMatrix::from_ggml(QuantFormat::Q4_1, 2, 32, &[0; 39]).is_err());
    // 896 columns: 28 blocks of 32, not whole super-blocks of 256.
    let q5_0 = QuantFormat::Q5_0.ggml_block_bytes() * 28;
    assert!(QMatrix::from_ggml(QuantFormat::Q5_0, 1, 896, &vec![0; q5_0]).is_ok());
    assert!(QMatrix::from_ggml(QuantFormat::Q4K, 1, 896, &vec![0; 504]).is_err());
    assert!(QMatrix::from_ggml(QuantFormat::Q6K, 1, 256, &[0; 209]).is_err());
    assert!(QMatrix::concat_rows(&[]).is_err());
}

#[test]
fn simd_and_portable_quantization_agree() {
    let mut rng = Lcg(9);
    let mut x = random_rows(4, 8 * BLOCK, &mut rng);
    // Ties and zeros: a block of exact halves and an all-zero block.
    for (i, v) in x[..BLOCK].iter_mut().enumerate() {
        *v = i as f32 - 15.5;
    }
    x[BLOCK..2 * BLOCK].fill(0.0);
    for block in x.chunks_exact(BLOCK) {
        let (mut a, mut b) = ([0i8; BLOCK], [0i8; BLOCK]);
        let pa = super::activations::quantize_block(false, block, &mut a);
        let pb = super::activations::quantize_block(dot::select() != Kernel::Portable, block, &mut b);
        assert_eq!((a, pa), (b, pb));
        assert!(a.iter().all(|&q| q >= -127));
    }
}

#[test]
fn every_kernel_gives_the_same_bits() {
    let mut rng = Lcg(13);
    for format in QuantFormat::ALL {
        // 21 rows: two full panels and a padded one; 5 and 13 activation
        // rows: full groups (of four or eight) and partial ones.
        let (n, k) = (21, 2 * SUPER_BLOCK);
        let w = random_matrix(format, n, k, &mut rng);
        for m in [5, 13] {
            let x = random_rows(m, k, &mut rng);
            let acts = QuantizedRows::quantize(&x, m, k);
            let want = run(Kernel::Portable, &w, &acts);
            for kernel in kernels() {
                assert_eq!(run(kernel, &w, &acts), want, "{format:?} {kernel:?} {m} rows");
            }
        }
    }
}

#[test]
fn panels_keep_every_value_scale_and_minimum() {
    let mut rng = Lcg(17);
    for format in QuantFormat::ALL {
        let (n, k) = (11, 2 * SUPER_BLOCK);
        let bytes = random_ggml(format, n, k, &mut rng);
        let w = QMatrix::from_ggml(format, n, k, &bytes).unwrap();
        let (bb, len) = (format.ggml_block_bytes(), format.block_len());
        let mut row = vec![0f32; k];
        for j in 0..n {
            w.dequantize_row(j, &mut row);
            let want: Vec<f32> = bytes[j * k / len * bb..(j + 1) * k / len * bb]
                .chunks_exact(bb)
                .flat_map(|b| ggml_reference::dequantize_block(format, b))
                .collect();
            // The same f32 operations as llama.cpp's: the same bits.
            assert_eq!(row, want, "{format:?} row {j}");
        }
        // Concatenation repacks across a panel boundary.
        let both = QMatrix::concat_rows(&[w.clone(), w.clone()]).unwrap();
        let mut again = vec![0f32; k];
        for j in 0..n {
            w.dequantize_row(j, &mut row);
            both.dequantize_row(n + j, &mut again);
            assert_eq!(row, again);
        }
    }
}

#[test]
fn memory_per_weight_is_near_the_gguf_size() {
    for format in QuantFormat::ALL {
        let (n, k) = (16, SUPER_BLOCK);
        let w = QMatrix::from_ggml(
            format,
            n,
            k,
            &vec![0; n * k / format.block_len() * format.ggml_block_bytes()],
        )
        .unwrap();
        let held = w.size_bytes() as f64 / (n * k) as f64;
        let gguf = format.ggml_block_bytes() as f64 / format.block_len() as f64;
        assert_eq!(held, format.bytes_per_weight(), "{format:?}");
        // Only the f16 scales grow to f32.
        assert!(held <= gguf + 4.0 / BLOCK as f64, "{format:?}: {held} vs {gguf}");
    }
}
