//! ragd-models: ragd's models. The BERT embedder ([`embed`]), the guard
//! classifiers ([`guard`]: NanoGuard, DeBERTa-v2) and the cross-encoder
//! reranker ([`rerank`]) run on candle; the Llama
//! generator ([`llama`], GGUF or safetensors) runs on ragd's own kernels
//! (`ragd-kernels`) over a paged KV cache. Also: tokenizers, chat
//! templates, finding a model's folder ([`resolve_model_dir`]).
//!
//! A new model family goes in a folder of its own here, and is loaded in
//! `ragd-service/src/models/load.rs`.
//!
//! Everything here is synchronous; the engine runs each model on its own
//! thread and batches requests for it.

pub mod device;
pub mod embed;
pub mod error;
pub mod guard;
pub mod hf_tokenizer;
pub mod llama;
mod model_dir;
mod model_id;
mod padding;
pub mod rerank;

pub use candle_core::Device;
pub use device::{cuda_available, DeviceChoice};
pub use embed::BertEmbedder;
pub use hf_tokenizer::HfTokenizer;
pub use model_dir::resolve_model_dir;
pub use model_id::model_id;
pub use rerank::CrossEncoder;
