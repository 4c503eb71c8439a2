//! Times the generator's steps on the CPU: a prefill of `PROMPT` tokens and
//! decode steps at several batch sizes (median of several steps each).
//!
//!     RAYON_NUM_THREADS=2 cargo run --release -p ragd-models --example generator_steps [GGUF] [PROMPT] [BATCHES]
//!
//! `BATCHES` is a comma-separated list (default `1,4,8,16`).
//!
//! A quick way to see what a change to the forward or the kernels does,
//! without a server; `ragd bench generate` measures the whole server.

use std::path::PathBuf;
use std::time::Instant;

use ragd_core::{Generator, SeqChunk};
use ragd_models::llama::{GeneratorOptions, LlamaGenerator};
use ragd_models::Device;

const BLOCK: usize = 16;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(".cache/ragd/models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    let prompt: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(128);
    let mut model = LlamaGenerator::from_gguf(&path, "bench", &Device::Cpu, &GeneratorOptions::default())
        .expect("load the generator");
    let per_seq = (prompt + 64).div_ceil(BLOCK) as u32;
    let tokens: Vec<u32> = (0..prompt as u32).map(|i| 100 + i * 7 % 5000).collect();

    let mut prefill = Vec::new();
    for _ in 0..3 {
        let blocks: Vec<u32> = (0..per_seq).collect();
        let chunk = SeqChunk {
            tokens: &tokens,
            start_pos: 0,
            blocks: &blocks,
            want_logits: true,
        };
        let t = Instant::now();
        model.step(&[chunk]).expect("prefill");
        prefill.push(t.elapsed().as_secs_f64());
    }
    let p = median(prefill);
    println!(
        "prefill {prompt} tokens: {:.0} ms ({:.0} tok/s)",
        p * 1e3,
        prompt as f64 / p
    );

    let batches: Vec<usize> = args
        .get(3)
        .map(|s| s.split(',').filter_map(|b| b.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 4, 8, 16]);
    for batch in batches {
        let tables: Vec<Vec<u32>> = (0..batch as u32)
            .map(|s| (s * per_seq..(s + 1) * per_seq).collect())
            .collect();
        // Fill each sequence's cache with the prompt first.
        for table in &tables {
            let chunk = SeqChunk {
                tokens: &tokens,
                start_pos: 0,
                blocks: table,
                want_logits: false,
            };
            model.step(&[chunk]).expect("prefill");
        }
        let mut times = Vec::new();
        for step in 0..24 {
            let next = [42u32];
            let chunks: Vec<SeqChunk<'_>> = tables
                .iter()
                .map(|table| SeqChunk {
                    tokens: &next,
                    start_pos: prompt + step,
                    blocks: table,
                    want_logits: true,
                })
                .collect();
            let t = Instant::now();
            model.step(&chunks).expect("decode");
            times.push(t.elapsed().as_secs_f64());
        }
        let s = median(times);
        println!(
            "decode batch {batch:2}: {:.1} ms/step, {:.0} tok/s",
            s * 1e3,
            batch as f64 / s
        );
    }
}
