//! Sentence embedders behind [`ragd_core::Embedder`]: BERT
//! (all-MiniLM-L6-v2) and MPNet (all-mpnet-base-v2), picked by
//! `config.json`'s `model_type` ([`load_embedder`]).

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use ragd_core::{Embedder, ModelError, Result};

use crate::hf_tokenizer::HfTokenizer;

pub mod bert;
pub mod bert_packed;
mod encoder_layer;
mod gelu;
pub mod mpnet;
mod pooling;

pub use bert::BertEmbedder;
pub use mpnet::MpnetEmbedder;

/// `config.json`'s `model_type`.
#[derive(serde::Deserialize)]
struct ModelType {
    #[serde(default)]
    model_type: Option<String>,
}

/// Loads the sentence embedder in `dir`: MPNet when `config.json` says
/// `"model_type": "mpnet"`, else BERT.
pub fn load_embedder(dir: &Path, id: &str, device: &Device) -> Result<(Box<dyn Embedder>, Arc<HfTokenizer>)> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::load(path.display(), e))?;
    let kind: ModelType = serde_json::from_str(&text).map_err(|e| ModelError::load(path.display(), e))?;
    Ok(match kind.model_type.as_deref() {
        Some("mpnet") => {
            let (model, tokenizer) = MpnetEmbedder::load(dir, id, device)?;
            (Box::new(model), tokenizer)
        }
        _ => {
            let (model, tokenizer) = BertEmbedder::load(dir, id, device)?;
            (Box::new(model), tokenizer)
        }
    })
}
