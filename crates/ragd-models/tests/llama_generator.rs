//! The batched Llama-family forward against the reference greedy tokens of
//! candle-transformers' `quantized_llama` (SmolLM2,
//! tests/fixtures/llama_greedy.json) and `quantized_qwen2` (Qwen2.5-Coder
//! 0.5B, tests/fixtures/qwen2_greedy.json), written by
//! examples/llama_reference.rs: alone, and in ragged batches that mix
//! chunked prefill with decoding, through scattered KV blocks. Both
//! backends: ragd's native CPU forward and the device-generic candle one
//! (here on the CPU; `device_generator.rs` runs it on CUDA).

mod common;

use ragd_core::{Generator, ModelError, SeqChunk, StepOutput};
use ragd_models::llama::{
    AttentionPath, CandleLlamaGenerator, GeneratorBackend, GeneratorOptions, KvBudget, KvDtype,
    LlamaGenerator,
};
use ragd_models::Device;

const BLOCK: usize = 16;

struct Case {
    prompt: Vec<u32>,
    want: Vec<u32>,
    gaps: Vec<f64>,
}

/// A GGUF generator and its reference fixture.
struct Model {
    name: &'static str,
    file: &'static str,
    fixture: &'static str,
    /// Not fetched by default: the test fetches it.
    optional: bool,
}

const SMOLLM2: Model = Model {
    name: "smollm2-135m-instruct-q4_1",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    fixture: "llama_greedy.json",
    optional: false,
};

const QWEN2: Model = Model {
    name: "qwen2.5-coder-0.5b-instruct-q4_k_m",
    file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    fixture: "qwen2_greedy.json",
    optional: true,
};

fn cases(model: &Model) -> Vec<Case> {
    let fixture = common::fixture_json(model.fixture);
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            prompt: ids(&c["prompt_ids"]),
            want: ids(&c["output_ids"]),
            gaps: c["logit_gaps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect(),
        })
        .collect()
}

fn generator(model: &Model, dtype: KvDtype, backend: GeneratorBackend) -> Box<dyn Generator> {
    generator_on(model, dtype, backend, &Device::Cpu)
}

fn generator_on(
    model: &Model,
    dtype: KvDtype,
    backend: GeneratorBackend,
    device: &Device,
) -> Box<dyn Generator> {
    let path = if model.optional {
        common::fetched_model(model.name, model.file)
    } else {
        common::model_file(model.name, model.file)
    };
    let kv = KvBudget {
        bytes: 160 * BLOCK * 46_080,
        block_size: BLOCK,
        dtype,
    };
    // The GGUF's own weights, exactly as the reference ran them.
    let opts = GeneratorOptions {
        kv,
        max_context: Some(1024),
        fast_weights: false,
        backend,
    };
    match backend {
        GeneratorBackend::Candle => {
            Box::new(CandleLlamaGenerator::from_gguf(&path, model.name, device, &opts).unwrap())
        }
        _ => Box::new(LlamaGenerator::from_gguf(&path, model.name, &Device::Cpu, &opts).unwrap()),
    }
}

/// A sequence being decoded greedily, with its own (deliberately scattered)
/// block table.
struct Seq {
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Positions already in the KV cache.
    done: usize,
    blocks: Vec<u32>,
    out: Vec<u32>,
}

impl Seq {
    fn new(case: &Case, blocks: Vec<u32>) -> Self {
        Self {
            tokens: case.prompt.clone(),
            prompt_len: case.prompt.len(),
            done: 0,
            blocks,
            out: Vec::new(),
        }
    }

    /// The next chunk: up to `max_prefill` prompt tokens, or the last token.
    fn chunk(&self, max_prefill: usize) -> SeqChunk<'_> {
        let end = if self.done < self.prompt_len {
            (self.done + max_prefill).min(self.prompt_len)
        } else {
            self.tokens.len()
        };
        SeqChunk {
            tokens: &self.tokens[self.done..end],
            start_pos: self.done,
            blocks: &self.blocks,
            want_logits: end == self.tokens.len(),
        }
    }

    fn advance(&mut self, fed: usize, logits: Option<&Vec<f32>>) {
        self.done += fed;
        if let Some(l) = logits {
            let next = argmax(l);
            self.out.push(next);
            self.tokens.push(next);
        }
    }
}

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in l.iter().enumerate() {
        if x > l[best] {
            best = i;
        }
    }
    best as u32
}

/// Runs every sequence to `n` generated tokens, `start[i]` steps late, with
/// prompts fed `max_prefill` tokens at a time.
fn run(model: &mut dyn Generator, seqs: &mut [Seq], n: usize, start: &[usize], max_prefill: usize) {
    let mut step = 0;
    while seqs.iter().any(|s| s.out.len() < n) {
        let active: Vec<usize> = (0..seqs.len())
            .filter(|&i| step >= start[i] && seqs[i].out.len() < n)
            .collect();
        let chunks: Vec<SeqChunk> = active.iter().map(|&i| seqs[i].chunk(max_prefill)).collect();
        let fed: Vec<(usize, bool)> = chunks.iter().map(|c| (c.tokens.len(), c.want_logits)).collect();
        let logits = model.step(&chunks).unwrap();
        let mut rows = logits.iter();
        for (&i, &(len, want)) in active.iter().zip(&fed) {
            seqs[i].advance(len, if want { rows.next() } else { None });
        }
        assert!(rows.next().is_none());
        step += 1;
    }
}

fn check(seqs: &[Seq], cases: &[Case], n: usize, what: &str) {
    for (i, (s, c)) in seqs.iter().zip(cases).enumerate() {
        let first_diff = s.out[..n].iter().zip(&c.want[..n]).position(|(a, b)| a != b);
        assert_eq!(
            first_diff,
            None,
            "{what}: prompt {i} diverges from the reference at token {first_diff:?} (the reference's top-2 logit gap there: {:?})",
            first_diff.map(|d| c.gaps[d])
        );
    }
}

/// Positions of each sequence's first `n` tokens equal to the reference's.
fn matching_positions(seqs: &[Seq], cases: &[Case], n: usize) -> Vec<usize> {
    seqs.iter()
        .zip(cases)
        .map(|(s, c)| {
            s.out[..n]
                .iter()
                .zip(&c.want[..n])
                .filter(|(a, b)| a == b)
                .count()
        })
        .collect()
}

/// Blocks 0..160 dealt out round-robin so that every sequence's table is
/// scattered and interleaved with the others'.
fn scattered_tables(n_seqs: usize, per_seq: usize) -> Vec<Vec<u32>> {
    (0..n_seqs)
        .map(|s| {
            (0..per_seq)
                .map(|j| (j * n_seqs + (s * 7 + j) % n_seqs) as u32)
                .collect()
        })
        .collect()
}

#[test]
fn greedy_tokens_match_the_reference_alone_and_in_ragged_batches() {
    // The f16 cache (the default) rounds K and V; the reference kept f32.
    for dtype in [KvDtype::F16, KvDtype::F32] {
        let mut model = generator(&SMOLLM2, dtype, GeneratorBackend::Native);
        greedy_tokens_match(&SMOLLM2, model.as_mut(), true);
    }
}

/// Qwen2 (biases on Q/K/V, half-split rotary pairs, K-quant weights) with
/// the default f16 cache.
#[test]
fn qwen2_greedy_tokens_match_the_reference_alone_and_in_ragged_batches() {
    let mut model = generator(&QWEN2, KvDtype::F16, GeneratorBackend::Native);
    greedy_tokens_match(&QWEN2, model.as_mut(), true);
}

/// The candle backend with an f32 cache gives exactly the reference's
/// tokens, alone and in ragged batches.
#[test]
fn candle_backend_with_an_f32_cache_gives_the_reference_tokens() {
    let mut model = generator(&SMOLLM2, KvDtype::F32, GeneratorBackend::Candle);
    greedy_tokens_match(&SMOLLM2, model.as_mut(), true);
}

/// So does its portable attention (gathered blocks, masked matmuls: the
/// path of devices without a kernel of their own), run here on the CPU.
#[test]
fn candle_backend_portable_attention_gives_the_reference_tokens() {
    let path = common::model_file(SMOLLM2.name, SMOLLM2.file);
    let opts = GeneratorOptions {
        kv: KvBudget {
            bytes: 160 * BLOCK * 46_080,
            block_size: BLOCK,
            dtype: KvDtype::F32,
        },
        max_context: Some(1024),
        fast_weights: false,
        backend: GeneratorBackend::Candle,
    };
    let mut model = CandleLlamaGenerator::from_gguf(&path, SMOLLM2.name, &Device::Cpu, &opts)
        .unwrap()
        .with_attention(AttentionPath::Portable);
    greedy_tokens_match(&SMOLLM2, &mut model, false);
}

/// With an f16 cache the candle backend may round differently from the f32
/// reference: at least 30 of 32 positions per prompt match.
#[test]
fn candle_backend_with_an_f16_cache_matches_at_least_30_of_32_positions() {
    let mut model = generator(&SMOLLM2, KvDtype::F16, GeneratorBackend::Candle);
    at_least_30_of_32_positions_match(model.as_mut(), "CPU");
}

/// The same tolerance on a CUDA GPU (candle's CUDA `QMatMul`, the fused
/// paged-attention kernel for decodes). Skipped without one.
#[test]
fn cuda_generator_matches_at_least_30_of_32_positions() {
    if !ragd_models::cuda_available() {
        eprintln!("skipped: no CUDA device (or built without the `cuda` feature)");
        return;
    }
    let device = Device::new_cuda(0).unwrap();
    let mut model = generator_on(&SMOLLM2, KvDtype::F16, GeneratorBackend::Candle, &device);
    at_least_30_of_32_positions_match(model.as_mut(), "CUDA");
}

fn at_least_30_of_32_positions_match(model: &mut dyn Generator, device: &str) {
    let cases = cases(&SMOLLM2);
    let n = 32;
    let tables = scattered_tables(cases.len(), 20);
    let mut seqs: Vec<Seq> = cases.iter().zip(tables).map(|(c, t)| Seq::new(c, t)).collect();
    let start: Vec<usize> = (0..cases.len()).map(|i| i * 3).collect();
    run(model, &mut seqs, n, &start, 5);
    let matching = matching_positions(&seqs, &cases, n);
    eprintln!("candle backend on {device}, f16 KV: matching positions of {n} per prompt: {matching:?}");
    assert!(matching.iter().all(|&m| m >= 30), "{matching:?}");
}

/// Qwen2 through the candle backend (biases, half-split rotary pairs,
/// K-quants as candle's `QMatMul` runs them), f32 cache; in ragged batches
/// only, the slower half of this test on the CPU.
#[test]
fn candle_backend_runs_qwen2_to_the_reference_tokens() {
    let mut model = generator(&QWEN2, KvDtype::F32, GeneratorBackend::Candle);
    greedy_tokens_match(&QWEN2, model.as_mut(), false);
}

/// The reference tokens for every prompt: each alone (when `alone`), then
/// all together in ragged batches.
fn greedy_tokens_match(spec: &Model, model: &mut dyn Generator, alone: bool) {
    let cases = cases(spec);
    assert!(cases.len() >= 8);
    let n = cases.iter().map(|c| c.want.len()).min().unwrap();
    assert!(n >= 32, "the fixture holds {n} tokens per prompt");

    // Alone: one sequence at a time, whole prompt in one step.
    for (i, case) in cases.iter().enumerate().filter(|_| alone) {
        let mut seq = [Seq::new(
            case,
            (0..20).rev().map(|b| b + 20 * (i as u32 % 4)).collect(),
        )];
        run(model, &mut seq, n, &[0], usize::MAX);
        check(&seq, std::slice::from_ref(case), n, "alone");
    }

    // Together: staggered starts, 5-token prefill chunks mixed with decodes,
    // scattered block tables.
    let tables = scattered_tables(cases.len(), 20);
    let mut seqs: Vec<Seq> = cases.iter().zip(tables).map(|(c, t)| Seq::new(c, t)).collect();
    let start: Vec<usize> = (0..cases.len()).map(|i| i * 3).collect();
    run(model, &mut seqs, n, &start, 5);
    check(&seqs, &cases, n, "batched");
}

/// The engine checks requests; a bad chunk is a scheduler bug, refused as an
/// internal error before it touches the cache.
#[test]
fn bad_chunks_are_refused_without_panicking() {
    for backend in [GeneratorBackend::Native, GeneratorBackend::Candle] {
        bad_chunks_are_refused(generator(&SMOLLM2, KvDtype::default(), backend).as_mut());
    }
}

fn bad_chunks_are_refused(model: &mut dyn Generator) {
    let internal = |r: Result<Vec<Vec<f32>>, ModelError>| matches!(r, Err(ModelError::Inference(_)));
    let blocks = [0u32, 1];
    let past_table = SeqChunk {
        tokens: &[1; 40],
        start_pos: 0,
        blocks: &blocks,
        want_logits: true,
    };
    assert!(internal(model.step(&[past_table])));
    let bad_token = SeqChunk {
        tokens: &[1, 9_999_999],
        start_pos: 0,
        blocks: &blocks,
        want_logits: true,
    };
    assert!(internal(model.step(&[bad_token])));
    let bad_block = SeqChunk {
        tokens: &[1],
        start_pos: 0,
        blocks: &[100_000],
        want_logits: true,
    };
    assert!(internal(model.step(&[bad_block])));
    let ok = SeqChunk {
        tokens: &[1, 2, 3],
        start_pos: 0,
        blocks: &blocks,
        want_logits: true,
    };
    let logits = model.step(&[ok]).unwrap();
    assert_eq!(logits.len(), 1);
    assert_eq!(logits[0].len(), model.vocab_size());
}

/// A sequence's logits are bit-identical whatever else is in its batch:
/// alone, or decoding beside longer sequences (whose block tables are
/// longer) and prefill chunks. Both backends.
#[test]
fn logits_do_not_depend_on_the_rest_of_the_batch() {
    let cases = cases(&SMOLLM2);
    for backend in [GeneratorBackend::Native, GeneratorBackend::Candle] {
        let mut model = generator(&SMOLLM2, KvDtype::F16, backend);
        let steps = 6;
        let logits_of_a = |model: &mut dyn Generator, with_others: bool| -> Vec<Vec<f32>> {
            let tables = scattered_tables(3, 20);
            let mut a = Seq::new(&cases[0], tables[0].clone());
            let mut others: Vec<Seq> = (1..3)
                .map(|i| Seq::new(&cases[i + 3], tables[i].clone()))
                .collect();
            let mut out = Vec::new();
            // The others go first, so their tables are longer than A's.
            if with_others {
                for _ in 0..12 {
                    let chunks: Vec<SeqChunk> = others.iter().map(|s| s.chunk(7)).collect();
                    let fed: Vec<(usize, bool)> =
                        chunks.iter().map(|c| (c.tokens.len(), c.want_logits)).collect();
                    let rows = model.step(&chunks).unwrap();
                    let mut rows = rows.iter();
                    for (s, (len, want)) in others.iter_mut().zip(fed) {
                        s.advance(len, if want { rows.next() } else { None });
                    }
                }
            }
            while a.out.len() < steps {
                let mut chunks = vec![a.chunk(usize::MAX)];
                if with_others {
                    chunks.extend(others.iter().map(|s| s.chunk(3)));
                }
                let fed: Vec<(usize, bool)> =
                    chunks.iter().map(|c| (c.tokens.len(), c.want_logits)).collect();
                let rows = model.step(&chunks).unwrap();
                out.push(rows[0].clone());
                let mut rows = rows.iter();
                a.advance(fed[0].0, rows.next());
                for (s, &(len, want)) in others.iter_mut().zip(&fed[1..]).filter(|_| with_others) {
                    s.advance(len, if want { rows.next() } else { None });
                }
            }
            out
        };
        let alone = logits_of_a(model.as_mut(), false);
        let batched = logits_of_a(model.as_mut(), true);
        for (step, (x, y)) in alone.iter().zip(&batched).enumerate() {
            let differ = x
                .iter()
                .zip(y)
                .filter(|(p, q)| p.to_bits() != q.to_bits())
                .count();
            assert_eq!(
                differ, 0,
                "{backend:?}: step {step}: {differ} logits differ when batched"
            );
        }
    }
}

/// `step_greedy` gives the argmax (picked where the logits are) for the
/// flagged rows and the whole row for the others, equal to `step`'s. Both
/// backends (the native one through the trait's default).
#[test]
fn greedy_steps_return_the_argmax_of_the_same_logits() {
    let cases = cases(&SMOLLM2);
    for backend in [GeneratorBackend::Native, GeneratorBackend::Candle] {
        let mut model = generator(&SMOLLM2, KvDtype::F16, backend);
        let tables = scattered_tables(2, 20);
        let chunk = |i: usize| SeqChunk {
            tokens: &cases[i].prompt,
            start_pos: 0,
            blocks: &tables[i],
            want_logits: true,
        };
        let rows = model.step(&[chunk(0), chunk(1)]).unwrap();
        // The same positions again: the cache gets the same values.
        let outs = model.step_greedy(&[chunk(0), chunk(1)], &[true, false]).unwrap();
        assert_eq!(outs.len(), 2);
        assert_eq!(
            outs[0],
            StepOutput::Token(ragd_core::argmax(&rows[0])),
            "{backend:?}"
        );
        assert_eq!(outs[1], StepOutput::Logits(rows[1].clone()), "{backend:?}");
        assert_eq!(ragd_core::argmax(&rows[0]), cases[0].want[0], "{backend:?}");
    }
}
