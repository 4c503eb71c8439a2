//! The DeBERTa-v2 guard against Hugging Face transformers on a tiny random
//! model shaped like Prompt-Guard-86M (`tests/fixtures/deberta_tiny/`, from
//! `scripts/reference/deberta_tiny.py`).

use std::path::PathBuf;

use candle_core::Device;
use ragd_core::{Classifier, Overflow, TokenBatch};
use ragd_models::guard::{detect_guard_format, DebertaGuard, GuardFormat};
use serde::Deserialize;

const TOL: f32 = 1e-4;

#[derive(Deserialize)]
struct Logits {
    input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
    logits: Vec<Vec<f32>>,
    labels: Vec<String>,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/deberta_tiny")
}

fn fixture() -> Logits {
    let path = dir().join("logits.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("logits.json")
}

/// The unpadded rows of the fixture.
fn rows(fx: &Logits) -> Vec<Vec<u32>> {
    fx.input_ids
        .iter()
        .zip(&fx.attention_mask)
        .map(|(ids, mask)| {
            ids.iter()
                .zip(mask)
                .filter(|(_, &m)| m == 1)
                .map(|(&i, _)| i)
                .collect()
        })
        .collect()
}

fn softmax(l: &[f32]) -> Vec<f32> {
    let m = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = l.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn loads_with_labels_and_framing() {
    assert_eq!(detect_guard_format(&dir()).unwrap(), GuardFormat::DebertaV2);
    let guard = DebertaGuard::load(&dir(), "tiny", &Device::Cpu).expect("load");
    let fx = fixture();
    assert_eq!(guard.labels(), fx.labels);
    let f = &guard.info().framing;
    assert_eq!(
        (f.prefix.as_slice(), f.suffix.as_slice()),
        (&[1u32][..], &[2u32][..])
    );
    assert_eq!(f.max_len, 64);
    assert_eq!(f.overflow, Overflow::Windows);
}

#[test]
fn logits_and_probs_match_transformers() {
    let fx = fixture();
    let mut guard = DebertaGuard::load(&dir(), "tiny", &Device::Cpu).expect("load");
    let rows = rows(&fx);
    let batch = TokenBatch::from_sequences(&rows);
    let logits = guard.logits(&batch).expect("logits");
    let probs = guard.classify(&batch).expect("classify");
    let (mut worst_logit, mut worst_prob) = (0f32, 0f32);
    for i in 0..rows.len() {
        let d = max_abs_diff(&logits[i], &fx.logits[i]);
        assert!(d < TOL, "row {i}: {:?} vs {:?}", logits[i], fx.logits[i]);
        worst_logit = worst_logit.max(d);
        let d = max_abs_diff(&probs[i], &softmax(&fx.logits[i]));
        assert!(d < TOL, "row {i}: {:?}", probs[i]);
        worst_prob = worst_prob.max(d);
        let single = guard
            .classify(&TokenBatch::from_sequences(&[&rows[i]]))
            .expect("classify");
        assert!(max_abs_diff(&single[0], &probs[i]) < 1e-5, "row {i} alone");
    }
    eprintln!("deberta: max |logit - hf| = {worst_logit:.2e}, max |p - hf| = {worst_prob:.2e}");
}

#[test]
fn rejects_bad_input() {
    let mut guard = DebertaGuard::load(&dir(), "tiny", &Device::Cpu).expect("load");
    assert!(guard
        .classify(&TokenBatch::from_sequences(&[vec![1, 128, 2]]))
        .is_err());
    assert!(guard
        .classify(&TokenBatch::from_sequences(&[vec![5; 65]]))
        .is_err());
}

/// A word-level `tokenizer.json` whose post-processor names `[CLS]` 10 and
/// `[SEP]` 11, to check `load_guard` reads them from there.
const TOKENIZER_JSON: &str = r#"{
  "version": "1.0", "truncation": null, "padding": null,
  "added_tokens": [
    {"id": 10, "content": "[CLS]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 11, "content": "[SEP]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
  ],
  "normalizer": null,
  "pre_tokenizer": {"type": "Whitespace"},
  "post_processor": {
    "type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
    "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
    "special_tokens": {
      "[CLS]": {"id": "[CLS]", "ids": [10], "tokens": ["[CLS]"]},
      "[SEP]": {"id": "[SEP]", "ids": [11], "tokens": ["[SEP]"]}
    }
  },
  "decoder": null,
  "model": {"type": "WordLevel", "vocab": {"[PAD]": 0, "[UNK]": 3, "hello": 4, "world": 5, "[CLS]": 10, "[SEP]": 11}, "unk_token": "[UNK]"}
}"#;

#[test]
fn load_guard_reads_the_tokenizer() {
    let tmp = std::env::temp_dir().join(format!("ragd-guard-deberta-{}", std::process::id()));
    let model_dir = tmp.join("my-guard");
    std::fs::create_dir_all(&model_dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(dir().join(f), model_dir.join(f)).unwrap();
    }
    let err = ragd_models::guard::load_guard(&model_dir, &Device::Cpu)
        .err()
        .expect("no tokenizer.json");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    std::fs::write(model_dir.join("tokenizer.json"), TOKENIZER_JSON).unwrap();
    let (mut guard, tokenizer) = ragd_models::guard::load_guard(&model_dir, &Device::Cpu).expect("load");
    std::fs::remove_dir_all(&tmp).ok();
    assert_eq!(guard.info().id, "my-guard");
    assert_eq!(guard.info().kind, ragd_core::ModelKind::Guard);
    let framing = guard.info().framing.clone();
    assert_eq!(
        (framing.prefix.clone(), framing.suffix.clone()),
        (vec![10], vec![11])
    );
    let content = tokenizer.encode("hello world").unwrap();
    assert_eq!(content, vec![4, 5]);
    let probs = guard
        .classify(&TokenBatch::from_sequences(&framing.frame(&content)))
        .unwrap();
    assert_eq!(probs.len(), 1);
    assert!((probs[0].iter().sum::<f32>() - 1.0).abs() < 1e-5);
}
