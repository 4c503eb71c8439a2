//! The cross-encoder reranker against Hugging Face transformers on tiny
//! random models (`tests/fixtures/cross_encoder_tiny/`: BERT, shaped like
//! ms-marco-MiniLM-L-6-v2; `tests/fixtures/xlmr_reranker_tiny/`: XLM-R,
//! shaped like bge-reranker-base; both from
//! `scripts/reference/cross_encoder_tiny.py`): the same pair token ids
//! (truncation included) and the same logits.

use std::path::PathBuf;

use candle_core::Device;
use ragd_core::{ModelKind, TextTokenizer, TokenBatch};
use ragd_models::rerank::{sigmoid, CrossEncoder};
use serde::Deserialize;

const TOL: f32 = 1e-4;

#[derive(Deserialize)]
struct Scores {
    max_length: usize,
    pairs: Vec<(String, String)>,
    input_ids: Vec<Vec<u32>>,
    logits: Vec<f32>,
    scores: Vec<f32>,
}

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn fixture(name: &str) -> Scores {
    let path = dir(name).join("scores.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("scores.json")
}

/// Frames every pair of the fixture as ragd does, checks the ids are
/// transformers', and checks the logits (in one batch and alone).
fn matches_transformers(name: &str) {
    let fx = fixture(name);
    let (mut model, tokenizer) = CrossEncoder::load(&dir(name), name, &Device::Cpu).expect("load");
    assert_eq!(model.info().kind, ModelKind::Reranker);
    assert_eq!(model.pairs().max_len, fx.max_length);
    let seqs: Vec<Vec<u32>> = fx
        .pairs
        .iter()
        .map(|(q, d)| {
            let q = tokenizer.encode_literal(q).unwrap();
            let d = tokenizer.encode_literal(d).unwrap();
            model.pairs().frame(&q, &d)
        })
        .collect();
    for (i, (ours, theirs)) in seqs.iter().zip(&fx.input_ids).enumerate() {
        assert_eq!(ours, theirs, "{name} pair {i}: token ids");
    }
    let logits = model.score(&TokenBatch::from_sequences(&seqs)).expect("score");
    let mut worst = 0f32;
    for (i, (&ours, &theirs)) in logits.iter().zip(&fx.logits).enumerate() {
        let d = (ours - theirs).abs();
        assert!(d < TOL, "{name} pair {i}: logit {ours} vs {theirs}");
        assert!(
            (sigmoid(ours) - fx.scores[i]).abs() < TOL,
            "{name} pair {i}: score"
        );
        worst = worst.max(d);
        let alone = model.score(&TokenBatch::from_sequences(&[&seqs[i]])).unwrap();
        assert!((alone[0] - ours).abs() < 1e-5, "{name} pair {i} alone");
    }
    eprintln!("{name}: max |logit - transformers| = {worst:.2e}");
}

#[test]
fn bert_cross_encoder_matches_transformers() {
    matches_transformers("cross_encoder_tiny");
}

#[test]
fn xlm_roberta_reranker_matches_transformers() {
    matches_transformers("xlmr_reranker_tiny");
}

#[test]
fn frames_pairs_with_the_tokenizers_template() {
    let (model, _) = CrossEncoder::load(&dir("cross_encoder_tiny"), "tiny", &Device::Cpu).unwrap();
    let p = model.pairs();
    assert_eq!((p.prefix.len(), p.middle.len(), p.suffix.len()), (1, 1, 1));
    assert_eq!(model.info().framing.prefix, p.prefix);
    let (model, _) = CrossEncoder::load(&dir("xlmr_reranker_tiny"), "tiny", &Device::Cpu).unwrap();
    let p = model.pairs();
    assert_eq!(p.middle, [p.suffix[0], p.suffix[0]], "<s> A </s></s> B </s>");
    assert_eq!(p.max_len, 64, "positions 0..pad+1 are not usable");
}

#[test]
fn rejects_long_sequences_and_multi_label_checkpoints() {
    let (mut model, _) = CrossEncoder::load(&dir("cross_encoder_tiny"), "tiny", &Device::Cpu).unwrap();
    assert!(model
        .score(&TokenBatch::from_sequences(&[vec![5u32; 65]]))
        .is_err());
    assert!(model.score(&TokenBatch::new()).unwrap().is_empty());

    // The same model with two labels is a classifier, not a reranker.
    let tmp = std::env::temp_dir().join(format!("ragd-rerank-2labels-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(dir("cross_encoder_tiny").join(f), tmp.join(f)).unwrap();
    }
    let mut tensors =
        candle_core::safetensors::load(dir("cross_encoder_tiny").join("model.safetensors"), &Device::Cpu)
            .unwrap();
    let two = candle_core::Tensor::zeros((2, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    tensors.insert("classifier.weight".into(), two);
    candle_core::safetensors::save(&tensors, tmp.join("model.safetensors")).unwrap();
    let err = CrossEncoder::load(&tmp, "two", &Device::Cpu)
        .err()
        .expect("refused");
    std::fs::remove_dir_all(&tmp).ok();
    assert!(err.to_string().contains("num_labels = 1"), "{err}");
}
