//! Seed corpora, written by `init` (see `RAGD_FUZZ_WRITE_SEEDS`) and
//! committed in `fuzz/corpus/<target>/`.

use std::io::Cursor;
use std::path::PathBuf;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::{chunking, request_json, store, tiktoken_pickle};

type Seeds = Vec<(String, Vec<u8>)>;

pub fn of(target: &str) -> Seeds {
    let named = |v: Vec<(&'static str, Vec<u8>)>| v.into_iter().map(|(n, b)| (n.to_string(), b)).collect();
    match target {
        "request_json" => named(request_json::seeds()),
        "chunking" => named(chunking::seeds()),
        "tiktoken_pickle" => tiktoken(),
        "gguf_metadata" => gguf(),
        "wal_replay" => wal(),
        "snapshot" => snapshot(),
        other => panic!("no seeds for target {other}"),
    }
}

fn models_dir() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let dir = PathBuf::from(home).join(".cache/ragd/models");
    dir.is_dir().then_some(dir)
}

fn tiktoken() -> Seeds {
    let mut seeds = vec![("tiny.pkl".to_string(), tiktoken_pickle::tiny_pickle())];
    // NanoGuard's own tokenizer.pkl (about 90 KB), when it is here.
    if let Some(bytes) = models_dir().and_then(|d| std::fs::read(d.join("nanoguard/tokenizer.pkl")).ok()) {
        seeds.push(("nanoguard.pkl".to_string(), bytes));
    }
    seeds
}

fn prefixed(flags: u8, bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![flags];
    v.extend_from_slice(bytes);
    v
}

fn wal() -> Seeds {
    let b = store::base();
    // The record the base log gained after the snapshot, alone.
    let record4 = b.wal_after_snapshot.clone();
    vec![
        ("whole_log".into(), prefixed(0b000, &b.wal)),
        ("whole_log_fixed".into(), prefixed(0b010, &b.wal)),
        ("append_nothing".into(), prefixed(0b001, &[])),
        ("append_record".into(), prefixed(0b011, &record4)),
        ("torn_tail".into(), prefixed(0b001, &record4[..record4.len() / 2])),
        ("after_snapshot".into(), prefixed(0b110, &b.wal_after_snapshot)),
        (
            "after_snapshot_replayed_twice".into(),
            prefixed(0b111, &b.wal_after_snapshot),
        ),
    ]
}

fn snapshot() -> Seeds {
    let b = store::base();
    let body = store::base_snapshot_body();
    vec![
        ("whole_file".into(), prefixed(0b000, &b.snapshot)),
        ("body".into(), prefixed(0b001, body)),
        ("body_and_old_log".into(), prefixed(0b011, body)),
        ("body_and_new_log".into(), prefixed(0b111, body)),
    ]
}

fn gguf() -> Seeds {
    let mut seeds = vec![("synthetic.gguf".to_string(), synthetic_gguf())];
    if let Some(bytes) = models_dir().and_then(|d| small_real_gguf(&d)) {
        seeds.push(("smollm2_small_vocab.gguf".to_string(), bytes));
    }
    seeds
}

fn strings(v: &[String]) -> gguf_file::Value {
    gguf_file::Value::Array(v.iter().cloned().map(gguf_file::Value::String).collect())
}

/// GPT-2's byte-to-character map of byte-level BPE.
fn byte_chars() -> Vec<String> {
    let printable =
        |b: u8| (b'!'..=b'~').contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let mut extra = 0u32;
    (0u8..=255)
        .map(|b| {
            if printable(b) {
                char::from(b).to_string()
            } else {
                extra += 1;
                char::from_u32(255 + extra).expect("a char").to_string()
            }
        })
        .collect()
}

/// Writes a GGUF: `metadata` and one tiny f32 tensor.
fn write_gguf(metadata: &[(String, gguf_file::Value)]) -> Vec<u8> {
    let t = Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu).expect("a tensor");
    let q = QTensor::quantize(&t, GgmlDType::F32).expect("a qtensor");
    let md: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &md, &[("output_norm.weight", &q)]).expect("write a GGUF");
    out.into_inner()
}

/// A made-up Llama GGUF header with a byte-level vocabulary, a few merges
/// and ChatML specials.
fn synthetic_gguf() -> Vec<u8> {
    use gguf_file::Value as V;
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .map(String::from)
        .to_vec();
    let mut types = vec![3i32; 3];
    tokens.extend(byte_chars());
    types.resize(tokens.len(), 1);
    let merges: Vec<String> = ["Ġ t", "h e", "Ġt he", "l l", "o r", "w or"]
        .map(String::from)
        .to_vec();
    for m in &merges {
        tokens.push(m.replace(' ', ""));
        types.push(1);
    }
    let md = vec![
        ("general.architecture".into(), V::String("llama".into())),
        ("general.alignment".into(), V::U32(32)),
        ("llama.block_count".into(), V::U32(2)),
        ("llama.context_length".into(), V::U32(256)),
        ("llama.embedding_length".into(), V::U32(64)),
        ("llama.attention.head_count".into(), V::U32(4)),
        ("llama.attention.head_count_kv".into(), V::U32(2)),
        ("llama.rope.freq_base".into(), V::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon".into(), V::F32(1e-5)),
        ("tokenizer.ggml.model".into(), V::String("gpt2".into())),
        ("tokenizer.ggml.tokens".into(), strings(&tokens)),
        (
            "tokenizer.ggml.token_type".into(),
            V::Array(types.into_iter().map(V::I32).collect()),
        ),
        ("tokenizer.ggml.merges".into(), strings(&merges)),
        ("tokenizer.ggml.bos_token_id".into(), V::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), V::U32(2)),
        (
            "tokenizer.chat_template".into(),
            V::String(request_json::CHATML.into()),
        ),
    ];
    write_gguf(&md)
}

/// SmolLM2's own header, its vocabulary cut to the first 600 tokens and
/// the merges among them (the whole header is 1.7 MB).
fn small_real_gguf(models: &std::path::Path) -> Option<Vec<u8>> {
    use gguf_file::Value as V;
    let dir = models.join("smollm2-135m-instruct-q4_1");
    let path = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "gguf"))?;
    let mut file = std::fs::File::open(path).ok()?;
    let content = gguf_file::Content::read(&mut file).ok()?;
    const KEEP: usize = 600;
    let mut md: Vec<(String, V)> = content.metadata.into_iter().collect();
    md.sort_by(|a, b| a.0.cmp(&b.0));
    let tokens: Vec<String> = match md.iter().find(|(k, _)| k == "tokenizer.ggml.tokens") {
        Some((_, V::Array(v))) => v
            .iter()
            .take(KEEP)
            .filter_map(|t| t.to_string().ok().cloned())
            .collect(),
        _ => return None,
    };
    let vocab: std::collections::HashSet<&str> = tokens.iter().map(String::as_str).collect();
    for (k, v) in md.iter_mut() {
        match k.as_str() {
            "tokenizer.ggml.tokens" => *v = strings(&tokens),
            "tokenizer.ggml.token_type" => {
                if let V::Array(a) = v {
                    a.truncate(KEEP);
                }
            }
            "tokenizer.ggml.merges" => {
                if let V::Array(a) = v {
                    a.retain(|m| {
                        m.to_string()
                            .ok()
                            .and_then(|m| m.split_once(' '))
                            .is_some_and(|(l, r)| {
                                vocab.contains(l)
                                    && vocab.contains(r)
                                    && vocab.contains(format!("{l}{r}").as_str())
                            })
                    });
                }
            }
            "llama.vocab_size" => *v = V::U32(KEEP as u32),
            _ => {}
        }
    }
    Some(write_gguf(&md))
}
