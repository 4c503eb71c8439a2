//! The MPNet embedder against sentence-transformers' vectors for
//! all-mpnet-base-v2 (fixture made by
//! `scripts/reference/embeddings_mpnet.py`). The model is optional
//! (~440 MB): the test fetches it with `models/fetch --only
//! all-mpnet-base-v2` when `$RAGD_MODELS_DIR` lacks it.

use std::sync::OnceLock;

use ragd_core::{Embedder, TokenBatch};
use ragd_models::embed::{load_embedder, MpnetEmbedder};

mod common;

const NAME: &str = "all-mpnet-base-v2";

fn model_dir() -> std::path::PathBuf {
    // One fetch even when the tests run in parallel.
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| common::fetched_model_dir(NAME)).clone()
}

#[test]
fn embeddings_match_sentence_transformers() {
    let fx = common::embedding_fixture("embeddings_mpnet.json");
    // Picked by config.json's model_type, as `ragd serve --embedder` does.
    let (mut model, tokenizer) = load_embedder(&model_dir(), NAME, &candle_core::Device::Cpu).unwrap();
    assert_eq!(model.dim(), 768);
    assert_eq!(
        model.info().framing.max_len,
        384,
        "sentence_bert_config.json's max_seq_length"
    );
    let seqs = common::framed_texts(model.as_ref(), tokenizer.as_ref(), &fx);
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(s, &fx.token_ids[i], "token ids of text {i}");
        assert_eq!(s.len(), fx.token_counts[i]);
    }
    assert!(
        seqs.iter().any(|s| s.len() > 129 && s.len() < 384),
        "the fixture should have relative distances past 128"
    );
    assert!(seqs.iter().any(|s| s.len() == 384), "and a truncated text");
    assert_eq!(fx.vectors[0].len(), 768);
    common::assert_embeds_like_fixture(model.as_mut(), &seqs, &fx);
}

#[test]
fn oversize_sequences_are_rejected_not_truncated_silently() {
    let (mut model, _) = MpnetEmbedder::load(&model_dir(), "m", &candle_core::Device::Cpu).unwrap();
    let err = model
        .embed(&TokenBatch::from_sequences(&[vec![0u32; 385]]))
        .unwrap_err();
    assert!(err.to_string().contains("exceeds the window"), "{err}");
}
