//! Sentence embedders behind [`ragd_core::Embedder`].

pub mod bert;
mod pooling;

pub use bert::BertEmbedder;
