//! Throughput of the batched quantized matmul on one matrix shape, for
//! every weight format (random blocks), in one run so they compare.
//!
//!     RAYON_NUM_THREADS=2 cargo run --release -p ragd-kernels --example quant_matmul [ROWS] [COLS] [BATCH] [FORMAT]
//!
//! Defaults: 896 x 4864, Qwen2.5-0.5B's `ffn_down` (hidden 896, FFN 4864),
//! batches 1, 4, 16 and 64 (`0`), every format.
//!
//! The machines are shared: every (format, batch) cell is timed in short
//! samples spread over rounds that visit all cells in turn, and keeps its
//! best, so each cell sees the same quiet and busy moments.

use std::time::Instant;

use half::f16;
use ragd_kernels::{QMatrix, QuantFormat};

const ROUNDS: usize = 12;
const SAMPLES_PER_ROUND: usize = 4;

fn main() {
    let arg = |i: usize, d: usize| std::env::args().nth(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (rows, cols) = (arg(1, 896), arg(2, 4864));
    let batches = if arg(3, 0) > 0 {
        vec![arg(3, 0)]
    } else {
        vec![1, 4, 16, 64]
    };
    let only = std::env::args().nth(4);
    let mut seed = 1u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (seed >> 33) as u8
    };
    let formats: Vec<QuantFormat> = QuantFormat::ALL
        .into_iter()
        .filter(|f| only.as_ref().is_none_or(|o| *o == format!("{f:?}")))
        .collect();
    let matrices: Vec<QMatrix> = formats
        .iter()
        .map(|&format| {
            let bb = format.ggml_block_bytes();
            let mut bytes: Vec<u8> = (0..rows * cols / format.block_len() * bb)
                .map(|_| next())
                .collect();
            for block in bytes.chunks_exact_mut(bb) {
                for &at in format.ggml_f16_fields() {
                    block[at..at + 2].copy_from_slice(&f16::from_f32(0.002).to_le_bytes());
                }
            }
            QMatrix::from_ggml(format, rows, cols, &bytes).unwrap()
        })
        .collect();
    let inputs: Vec<Vec<f32>> = batches
        .iter()
        .map(|&batch| {
            (0..batch * cols)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect()
        })
        .collect();
    let mut best = vec![vec![f64::MAX; batches.len()]; formats.len()];
    for _ in 0..ROUNDS {
        for (w, best) in matrices.iter().zip(&mut best) {
            for ((&batch, x), best) in batches.iter().zip(&inputs).zip(best.iter_mut()) {
                let mut out = vec![0f32; batch * rows];
                let reps = (200_000_000 / (rows * cols * batch)).max(1);
                for _ in 0..SAMPLES_PER_ROUND {
                    let t = Instant::now();
                    for _ in 0..reps {
                        w.matmul(x, batch, &mut out);
                    }
                    *best = best.min(t.elapsed().as_secs_f64() / reps as f64);
                }
            }
        }
    }
    println!("threads {}", rayon::current_num_threads());
    for (w, best) in matrices.iter().zip(&best) {
        let format = w.format();
        let held = w.size_bytes() as f64 * 8.0 / (rows * cols) as f64;
        let gguf = format.ggml_block_bytes() as f64 * 8.0 / format.block_len() as f64;
        for (&batch, &t) in batches.iter().zip(best) {
            let gmacs = (rows * cols * batch) as f64 / t / 1e9;
            println!(
                "{format:?} {rows}x{cols} batch {batch:3}: {:8.1} us  {gmacs:6.1} GMAC/s  ({held:.2} bits/weight held, {gguf:.2} in GGUF)",
                t * 1e6
            );
        }
    }
}
