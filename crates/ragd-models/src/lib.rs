//! ragd-models: candle implementations of ragd's models.
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

pub use candle_core::Device;
pub use device::DeviceChoice;
pub use embed::BertEmbedder;
pub use hf_tokenizer::HfTokenizer;
pub use model_dir::resolve_model_dir;
pub use model_id::model_id;
