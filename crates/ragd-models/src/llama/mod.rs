//! The Llama generator: tokenizer from GGUF metadata (the batched forward
//! with paged KV cache comes with the generation engine).

pub mod chat_template;
pub mod gguf_tokenizer;

pub use chat_template::{ChatMessage, ChatTemplate};
pub use gguf_tokenizer::{GgufTokenizer, GgufVocab};
