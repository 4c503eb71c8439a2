//! A tiny random Qwen2 GGUF, written by the test itself (no download): ragd's
//! forward against candle-transformers' `quantized_qwen2` on the same file.
//! Every matrix is F32, so both compute the same thing up to summation
//! order: Q/K/V biases, half-split rotary pairs with Qwen2's base, grouped
//! KV heads and the untied output matrix are all checked exactly.

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_qwen2::ModelWeights;
use ragd_core::{Generator, SeqChunk};
use ragd_models::llama::{Architecture, GeneratorOptions, KvBudget, KvDtype, LlamaGenerator};

mod common;

const LAYERS: usize = 2;
const HIDDEN: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;
const FFN: usize = 96;
const VOCAB: usize = 80;

/// An F32 tensor of `shape` with values in `[center - spread, center + spread)`.
fn random_tensor(rng: &mut common::Lcg, shape: &[usize], center: f32, spread: f32) -> QTensor {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| center + spread * rng.uniform()).collect();
    let t = Tensor::from_vec(v, shape, &Device::Cpu).unwrap();
    QTensor::quantize(&t, GgmlDType::F32).unwrap()
}

/// Writes the tiny model to a temporary file and returns its path.
fn write_tiny_qwen2() -> std::path::PathBuf {
    let mut rng = common::Lcg(7);
    let (q_dim, kv_dim) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            random_tensor(&mut rng, &[VOCAB, HIDDEN], 0.0, 0.5),
        ),
        (
            "output_norm.weight".into(),
            random_tensor(&mut rng, &[HIDDEN], 1.0, 0.2),
        ),
        (
            "output.weight".into(),
            random_tensor(&mut rng, &[VOCAB, HIDDEN], 0.0, 0.3),
        ),
    ];
    for l in 0..LAYERS {
        let mut add = |name: &str, shape: &[usize], center: f32, spread: f32| {
            tensors.push((
                format!("blk.{l}.{name}"),
                random_tensor(&mut rng, shape, center, spread),
            ));
        };
        add("attn_norm.weight", &[HIDDEN], 1.0, 0.2);
        add("attn_q.weight", &[q_dim, HIDDEN], 0.0, 0.2);
        add("attn_k.weight", &[kv_dim, HIDDEN], 0.0, 0.2);
        add("attn_v.weight", &[kv_dim, HIDDEN], 0.0, 0.2);
        // Large biases, as Qwen2's K biases are: a forward that dropped them
        // would be far off.
        add("attn_q.bias", &[q_dim], 0.0, 1.0);
        add("attn_k.bias", &[kv_dim], 0.0, 2.0);
        add("attn_v.bias", &[kv_dim], 0.0, 0.5);
        add("attn_output.weight", &[HIDDEN, q_dim], 0.0, 0.2);
        add("ffn_norm.weight", &[HIDDEN], 1.0, 0.2);
        add("ffn_gate.weight", &[FFN, HIDDEN], 0.0, 0.2);
        add("ffn_up.weight", &[FFN, HIDDEN], 0.0, 0.2);
        add("ffn_down.weight", &[HIDDEN, FFN], 0.0, 0.2);
    }
    use gguf_file::Value;
    let u32v = |v: usize| Value::U32(v as u32);
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("qwen2".into())),
        ("qwen2.block_count", u32v(LAYERS)),
        ("qwen2.embedding_length", u32v(HIDDEN)),
        ("qwen2.feed_forward_length", u32v(FFN)),
        ("qwen2.attention.head_count", u32v(HEADS)),
        ("qwen2.attention.head_count_kv", u32v(KV_HEADS)),
        ("qwen2.context_length", u32v(256)),
        ("qwen2.rope.freq_base", Value::F32(1_000_000.0)),
        ("qwen2.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
        ("qwen2.vocab_size", u32v(VOCAB)),
    ];
    let path = std::env::temp_dir().join(format!("ragd-tiny-qwen2-{}.gguf", std::process::id()));
    let mut file = std::fs::File::create(&path).unwrap();
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut file, &md, &ts).unwrap();
    path
}

/// candle-transformers' logits after feeding `prompt` at once, then each
/// of `next` one at a time.
fn reference_logits(path: &std::path::Path, prompt: &[u32], next: &[u32]) -> Vec<Vec<f32>> {
    let mut file = std::fs::File::open(path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut model = ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    for chunk in std::iter::once(prompt).chain(next.chunks(1)) {
        let input = Tensor::new(chunk, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let logits = model.forward(&input, pos).unwrap().squeeze(0).unwrap();
        out.push(logits.to_vec1::<f32>().unwrap());
        pos += chunk.len();
    }
    out
}

#[test]
fn a_tiny_random_qwen2_runs_like_candle_transformers() {
    let path = write_tiny_qwen2();
    let opts = GeneratorOptions {
        kv: KvBudget {
            bytes: 1 << 20,
            block_size: 16,
            dtype: KvDtype::F32,
        },
        max_context: None,
        fast_weights: false,
        ..Default::default()
    };
    let mut model = LlamaGenerator::from_gguf(&path, "tiny-qwen2", &Device::Cpu, &opts).unwrap();
    assert_eq!(model.config().arch, Architecture::Qwen2);
    let prompt: Vec<u32> = vec![3, 17, 42, 8, 77, 15, 60, 2, 33];
    let next: Vec<u32> = vec![5, 71, 19, 40];
    let want = reference_logits(&path, &prompt, &next);

    let blocks: Vec<u32> = vec![3, 1];
    let mut got = Vec::new();
    let mut tokens = prompt.clone();
    let mut fed = 0;
    for &t in std::iter::once(&u32::MAX).chain(&next) {
        if t != u32::MAX {
            tokens.push(t);
        }
        let chunk = SeqChunk {
            tokens: &tokens[fed..],
            start_pos: fed,
            blocks: &blocks,
            want_logits: true,
        };
        got.push(model.step(&[chunk]).unwrap().remove(0));
        fed = tokens.len();
    }
    for (step, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.len(), VOCAB);
        let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
        let diff = g.iter().zip(w).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            diff <= 1e-4 * scale.max(1.0),
            "step {step}: logits differ by {diff} (largest {scale})"
        );
    }
    let _ = std::fs::remove_file(&path);
}
