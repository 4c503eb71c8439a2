//! The Llama generator: tokenizer from GGUF metadata (the batched forward
//! with paged KV cache comes with the generation engine).

pub mod gguf_tokenizer;

pub use gguf_tokenizer::{GgufTokenizer, GgufVocab};
