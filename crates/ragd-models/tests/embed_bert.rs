//! The BERT embedder against sentence-transformers' vectors for the same
//! model (fixture made by `scripts/reference/embeddings.py`).

use std::path::PathBuf;

use ragd_core::{Embedder, TextTokenizer, TokenBatch};
use ragd_models::BertEmbedder;
use serde_json::Value;

mod common;

fn model_dir() -> PathBuf {
    common::model_file("all-minilm-l6-v2", "")
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

struct Fixture {
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
    token_counts: Vec<usize>,
}

fn fixture() -> Fixture {
    let v: Value = common::fixture_json("embeddings.json");
    let texts = v["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let vectors = v["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    let token_counts = v["token_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    Fixture {
        texts,
        vectors,
        token_counts,
    }
}

#[test]
fn embeddings_match_sentence_transformers() {
    let fx = fixture();
    assert!(fx.texts.len() >= 16);
    let (mut model, tokenizer) =
        BertEmbedder::load(&model_dir(), "all-minilm-l6-v2", &candle_core::Device::Cpu).unwrap();
    let framing = model.info().framing.clone();
    let seqs: Vec<Vec<u32>> = fx
        .texts
        .iter()
        .map(|t| framing.frame(&tokenizer.encode(t).unwrap()).remove(0))
        .collect();
    let long = seqs.iter().filter(|s| s.len() == 256).count();
    assert!(
        long >= 4,
        "the fixture should exercise truncation at 256 tokens ({long} do)"
    );
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(s.len(), fx.token_counts[i], "token count of text {i}");
    }
    // All at once (sorted into length buckets inside) and one at a time.
    let batched = model.embed(&TokenBatch::from_sequences(&seqs)).unwrap();
    let mut worst = 1f32;
    for (i, want) in fx.vectors.iter().enumerate() {
        let alone = model
            .embed(&TokenBatch::from_sequences(&[&seqs[i]]))
            .unwrap()
            .remove(0);
        for got in [&batched[i], &alone] {
            assert_eq!(got.len(), 384);
            let c = cosine(got, want);
            worst = worst.min(c);
            assert!(c >= 0.9999, "text {i}: cosine {c} < 0.9999");
        }
    }
    eprintln!("worst cosine over {} texts: {worst}", fx.texts.len());
}

#[test]
fn oversize_sequences_are_rejected_not_truncated_silently() {
    let (mut model, _) = BertEmbedder::load(&model_dir(), "m", &candle_core::Device::Cpu).unwrap();
    let err = model
        .embed(&TokenBatch::from_sequences(&[vec![101u32; 300]]))
        .unwrap_err();
    assert!(err.to_string().contains("exceeds the window"), "{err}");
}
