//! The BERT embedder against sentence-transformers' vectors for the same
//! model (fixture made by `scripts/reference/embeddings.py`).

use std::path::PathBuf;

use ragd_core::{Embedder, TokenBatch};
use ragd_models::BertEmbedder;

mod common;

fn model_dir() -> PathBuf {
    common::model_file("all-minilm-l6-v2", "")
}

#[test]
fn embeddings_match_sentence_transformers() {
    let fx = common::embedding_fixture("embeddings.json");
    assert!(fx.texts.len() >= 16);
    let (mut model, tokenizer) =
        BertEmbedder::load(&model_dir(), "all-minilm-l6-v2", &candle_core::Device::Cpu).unwrap();
    let seqs = common::framed_texts(&model, tokenizer.as_ref(), &fx);
    let long = seqs.iter().filter(|s| s.len() == 256).count();
    assert!(
        long >= 4,
        "the fixture should exercise truncation at 256 tokens ({long} do)"
    );
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(s.len(), fx.token_counts[i], "token count of text {i}");
    }
    assert_eq!(fx.vectors[0].len(), 384);
    common::assert_embeds_like_fixture(&mut model, &seqs, &fx);
}

#[test]
fn oversize_sequences_are_rejected_not_truncated_silently() {
    let (mut model, _) = BertEmbedder::load(&model_dir(), "m", &candle_core::Device::Cpu).unwrap();
    let err = model
        .embed(&TokenBatch::from_sequences(&[vec![101u32; 300]]))
        .unwrap_err();
    assert!(err.to_string().contains("exceeds the window"), "{err}");
}
