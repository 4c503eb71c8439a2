//! The Llama-family generator (Llama, Qwen2): batched forward over a paged
//! KV cache, weights from GGUF or safetensors, tokenizer from GGUF
//! metadata, chat template.

mod candle_backend;
pub mod chat_template;
mod config;
mod generator;
pub mod gguf_tokenizer;
mod linear;
mod load;
mod ops;
mod weights;

pub use candle_backend::{AttentionPath, CandleLlamaGenerator};
pub use chat_template::{ChatMessage, ChatTemplate, PromptPiece};
pub use config::{Architecture, LlamaConfig};
pub use generator::{GeneratorBackend, GeneratorOptions, KvBudget, LlamaGenerator};
pub use gguf_tokenizer::{read_gguf_header, GgufTokenizer, GgufVocab};
pub use linear::{Embedding, Linear};
pub use load::{load_generator, LoadedGenerator};
pub use ragd_kernels::KvDtype;
pub use weights::{LayerWeights, LlamaWeights};
