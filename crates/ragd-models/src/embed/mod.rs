//! Sentence embedders behind [`ragd_core::Embedder`].

pub mod bert;
pub mod bert_packed;
mod gelu;
mod pooling;

pub use bert::BertEmbedder;
