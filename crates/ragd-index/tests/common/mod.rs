//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ragd_index::testing::{HashEmbedder, WhitespaceTokenizer};
use ragd_index::{Collection, CollectionConfig, DocumentInput, Metadata, Store, StoreOptions, UpsertOutcome};

pub const DIM: usize = 64;

pub fn config() -> CollectionConfig {
    CollectionConfig::new(DIM, 16, 4)
}

pub fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, StoreOptions::default()).unwrap()
}

pub fn doc(id: &str, text: &str, metadata: serde_json::Value) -> DocumentInput {
    DocumentInput {
        id: id.into(),
        text: text.into(),
        metadata: metadata.as_object().cloned().unwrap_or_else(Metadata::new),
    }
}

pub fn upsert(c: &Collection, docs: Vec<DocumentInput>) -> UpsertOutcome {
    let embedder = HashEmbedder::new(c.config().dim);
    c.upsert_with(docs, &WhitespaceTokenizer, |t| embedder.embed(t))
        .unwrap()
}

pub fn query(text: &str) -> Vec<f32> {
    HashEmbedder::new(DIM).embed_one(text)
}

/// Every document of a collection as `(id, metadata, chunks)`, sorted: a
/// full picture of its content for before/after comparisons.
pub fn dump(c: &Collection, ids: impl IntoIterator<Item = String>) -> Vec<(String, Metadata, Vec<String>)> {
    let mut out: Vec<_> = ids
        .into_iter()
        .filter_map(|id| c.document(&id).unwrap())
        .map(|d| (d.id, d.metadata, d.chunks))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A text of `n` distinct words starting with `tag`.
pub fn words(tag: &str, n: usize) -> String {
    (0..n).map(|i| format!("{tag}{i}")).collect::<Vec<_>>().join(" ")
}
