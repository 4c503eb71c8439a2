//! NanoGuard against the original PyTorch model and tiktoken
//! (`tests/fixtures/nanoguard.json`, from `scripts/reference/nanoguard_ref.py`).
//!
//! Needs the real model files: run `models/fetch` first (or point
//! `RAGD_MODELS_DIR` at a folder holding `nanoguard/`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use candle_core::Device;
use ragd_core::{Classifier, ModelKind, Overflow, TextTokenizer, TokenBatch};
use ragd_models::guard::{load_guard, NanoGuard, TiktokenTokenizer};
use serde::Deserialize;

/// Tolerance on probabilities against PyTorch.
const TOL: f32 = 1e-3;

#[derive(Deserialize)]
struct Fixture {
    bos_id: u32,
    pad_id: u32,
    n_vocab: usize,
    cases: Vec<Case>,
    long_cases: Vec<LongCase>,
    tokenizer_cases: Vec<TokCase>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    token_ids: Vec<u32>,
    probs: Vec<f32>,
}

#[derive(Deserialize)]
struct LongCase {
    text: String,
    n_content_tokens: usize,
    windows: Vec<Vec<u32>>,
    window_probs: Vec<Vec<f32>>,
    max_injection: f32,
}

#[derive(Deserialize)]
struct TokCase {
    text: String,
    ids: Vec<u32>,
}

mod common;

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| serde_json::from_value(common::fixture_json("nanoguard.json")).expect("nanoguard.json"))
}

/// `$RAGD_MODELS_DIR/nanoguard`, else `<repo>/models/cache/nanoguard`.
fn nanoguard_dir() -> PathBuf {
    common::model_file("nanoguard", "")
}

type Loaded = (Mutex<NanoGuard>, Arc<TiktokenTokenizer>);

fn model() -> &'static Loaded {
    static M: OnceLock<Loaded> = OnceLock::new();
    M.get_or_init(|| {
        for f in ["model.pt", "tokenizer.pkl"] {
            common::model_file("nanoguard", f);
        }
        let dir = nanoguard_dir();
        let (guard, tok) = NanoGuard::load(&dir, "nanoguard", &Device::Cpu).expect("load NanoGuard");
        (Mutex::new(guard), tok)
    })
}

fn guard() -> MutexGuard<'static, NanoGuard> {
    model().0.lock().unwrap_or_else(|e| e.into_inner())
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn tokenizer_matches_tiktoken() {
    let fx = fixture();
    let tok = &model().1;
    assert_eq!(tok.vocab_size(), fx.n_vocab);
    assert_eq!(tok.special_token("<|reserved_0|>"), Some(fx.bos_id));
    assert_eq!(tok.special_token("<|reserved_1|>"), Some(fx.pad_id));
    for c in &fx.tokenizer_cases {
        assert_eq!(tok.encode(&c.text).unwrap(), c.ids, "text {:?}", c.text);
    }
    let framing = guard().info().framing.clone();
    for c in &fx.cases {
        let windows = framing.frame(&tok.encode(&c.text).unwrap());
        assert_eq!(windows[0], c.token_ids, "text {:?}", c.text);
    }
    for c in &fx.long_cases {
        let content = tok.encode(&c.text).unwrap();
        assert_eq!(content.len(), c.n_content_tokens);
        assert_eq!(framing.frame(&content), c.windows);
    }
}

#[test]
fn probabilities_match_pytorch_batched_and_one_at_a_time() {
    let fx = fixture();
    let mut guard = guard();
    assert_eq!(guard.labels(), ["safe", "injection"]);
    let seqs: Vec<&[u32]> = fx.cases.iter().map(|c| c.token_ids.as_slice()).collect();
    let batched = guard
        .classify(&TokenBatch::from_sequences(&seqs))
        .expect("classify");
    assert_eq!(batched.len(), fx.cases.len());
    let (mut worst_ref, mut worst_batch) = (0f32, 0f32);
    for (c, probs) in fx.cases.iter().zip(&batched) {
        let d = max_abs_diff(probs, &c.probs);
        assert!(d < TOL, "{:?}: {probs:?} vs {:?}", c.text, c.probs);
        worst_ref = worst_ref.max(d);
        let single = guard
            .classify(&TokenBatch::from_sequences(&[&c.token_ids]))
            .expect("classify");
        let d = max_abs_diff(&single[0], probs);
        assert!(
            d < 1e-5,
            "{:?}: single {:?} vs batched {probs:?}",
            c.text,
            single[0]
        );
        worst_batch = worst_batch.max(d);
    }
    // Several windows in one forward pass (the accelerator default).
    guard.set_sequences_per_pass(8);
    let packed = guard.classify(&TokenBatch::from_sequences(&seqs));
    guard.set_sequences_per_pass(1);
    for (p, probs) in packed.expect("classify").iter().zip(&batched) {
        let d = max_abs_diff(p, probs);
        assert!(d < 1e-5, "8 per pass {p:?} vs 1 per pass {probs:?}");
        worst_batch = worst_batch.max(d);
    }
    eprintln!(
        "nanoguard: {} texts, max |p - torch| = {worst_ref:.2e}, max |alone - in a batch| = {worst_batch:.2e}",
        fx.cases.len()
    );
}

#[test]
fn windows_of_long_texts_match_pytorch() {
    let fx = fixture();
    let mut guard = guard();
    let mut worst = 0f32;
    for c in &fx.long_cases {
        let probs = guard
            .classify(&TokenBatch::from_sequences(&c.windows))
            .expect("classify");
        for (p, want) in probs.iter().zip(&c.window_probs) {
            let d = max_abs_diff(p, want);
            assert!(d < TOL, "{:?}: {p:?} vs {want:?}", &c.text[..40]);
            worst = worst.max(d);
        }
        let max_inj = probs.iter().map(|p| p[1]).fold(0.0, f32::max);
        assert!((max_inj - c.max_injection).abs() < TOL);
    }
    eprintln!("nanoguard windows: max |p - torch| = {worst:.2e}");
}

#[test]
fn load_guard_detects_nanoguard() {
    model(); // fails with the `models/fetch` hint when the files are missing
    let (guard, tokenizer) = load_guard(&nanoguard_dir(), &Device::Cpu).expect("load_guard");
    let info = guard.info();
    assert_eq!(info.id, "nanoguard");
    assert_eq!(info.kind, ModelKind::Guard);
    assert_eq!(info.framing.prefix, vec![fixture().bos_id]);
    assert!(info.framing.suffix.is_empty());
    assert_eq!(info.framing.max_len, 512);
    assert_eq!(info.framing.overflow, Overflow::Windows);
    assert_eq!(tokenizer.vocab_size(), 8192);
}

#[test]
fn rejects_bad_input() {
    let mut guard = guard();
    assert!(guard
        .classify(&TokenBatch::from_sequences(&[vec![8188, 8192]]))
        .is_err());
    assert!(guard
        .classify(&TokenBatch::from_sequences(&[vec![1; 513]]))
        .is_err());
    assert!(guard
        .classify(&TokenBatch::new())
        .expect("empty batch")
        .is_empty());
}
