//! Throughput of the batched quantized matmul on one matrix shape.
//!
//!     RAYON_NUM_THREADS=1 cargo run --release -p ragd-kernels --example quant_matmul [ROWS] [COLS] [BATCH]

use std::time::Instant;

use ragd_kernels::{QMatrix, QuantFormat};

fn main() {
    let arg = |i: usize, d: usize| std::env::args().nth(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (rows, cols) = (arg(1, 1536), arg(2, 576));
    let mut seed = 1u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (seed >> 33) as u8
    };
    for format in [QuantFormat::Q4_1, QuantFormat::Q8_0] {
        let bytes: Vec<u8> = (0..rows * cols / 32 * format.ggml_block_bytes())
            .enumerate()
            .map(|(i, _)| {
                if i % format.ggml_block_bytes() < 4 {
                    0x20
                } else {
                    next()
                }
            })
            .collect();
        let w = QMatrix::from_ggml(format, rows, cols, &bytes).unwrap();
        for batch in [1usize, 4, 16, 64] {
            let batch = if arg(3, 0) > 0 { arg(3, 0) } else { batch };
            let x: Vec<f32> = (0..batch * cols)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let mut out = vec![0f32; batch * rows];
            let reps = (2_000_000_000 / (rows * cols * batch)).max(3);
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                for _ in 0..reps {
                    w.matmul(&x, batch, &mut out);
                }
                best = best.min(t.elapsed().as_secs_f64() / reps as f64);
            }
            let gmacs = (rows * cols * batch) as f64 / best / 1e9;
            println!(
                "{format:?} {rows}x{cols} batch {batch:3}: {:8.1} us  {gmacs:6.1} GMAC/s",
                best * 1e6
            );
        }
    }
}
