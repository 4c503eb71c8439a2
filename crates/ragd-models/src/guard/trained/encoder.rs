//! The frozen encoders a trained head reads: the BERT embedder's pooled,
//! normalised sentence vector, NanoGuard's pooled features (what its own
//! classification head sees), and hashed character n-grams (`ngrams.rs`,
//! no weights and no folder).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use ragd_core::{Classifier, Embedder, Framing, ModelError, Result, TextTokenizer, TokenBatch};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::embed::BertEmbedder;
use crate::guard::nanoguard::NanoGuard;

/// Which model an encoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderKind {
    /// A BERT sentence embedder folder (all-MiniLM-L6-v2).
    Embedder,
    /// A NanoGuard folder.
    NanoGuard,
    /// Hashed character n-grams (`ngrams.rs`).
    #[serde(rename = "char-ngrams")]
    CharNgrams,
}

impl EncoderKind {
    /// The weights file whose hash identifies the encoder (for n-grams,
    /// their description stands in for it).
    pub fn weights_file(self) -> &'static str {
        match self {
            Self::Embedder => "model.safetensors",
            Self::NanoGuard => "model.pt",
            Self::CharNgrams => "(the n-gram featurizer's description)",
        }
    }

    /// Whether it loads from a model folder.
    pub fn has_folder(self) -> bool {
        self != Self::CharNgrams
    }
}

enum Model {
    Bert(BertEmbedder, TextInput),
    NanoGuard(NanoGuard, TextInput),
    CharNgrams,
}

/// How a neural encoder reads a text: its tokenizer and framing.
struct TextInput {
    tokenizer: Arc<dyn TextTokenizer>,
    framing: Framing,
}

impl TextInput {
    /// Each text's first window (special tokens added, the rest cut off);
    /// special-token strings in the text are read as plain text.
    fn first_windows(&self, texts: &[&str]) -> Result<TokenBatch> {
        let mut batch = TokenBatch::new();
        for text in texts {
            let ids = self.tokenizer.encode_literal(text)?;
            let first = self.framing.frame(&ids).into_iter().next().unwrap_or_default();
            batch.push(&first);
        }
        Ok(batch)
    }
}

/// A loaded encoder: text in, one feature vector out.
pub struct FeatureEncoder {
    kind: EncoderKind,
    model: Model,
    dim: usize,
}

impl FeatureEncoder {
    /// Loads `kind` from `dir` (ignored for n-grams).
    pub fn load(kind: EncoderKind, dir: &Path, device: &Device) -> Result<Self> {
        let (model, dim) = match kind {
            EncoderKind::Embedder => {
                let (model, tokenizer) = BertEmbedder::load(dir, &crate::model_id(dir)?, device)?;
                let framing = model.info().framing.clone();
                let dim = model.dim();
                (Model::Bert(model, TextInput { tokenizer, framing }), dim)
            }
            EncoderKind::NanoGuard => {
                let (model, tokenizer) = NanoGuard::load(dir, &crate::model_id(dir)?, device)?;
                let framing = model.info().framing.clone();
                let dim = model.config().n_embd;
                (Model::NanoGuard(model, TextInput { tokenizer, framing }), dim)
            }
            EncoderKind::CharNgrams => (Model::CharNgrams, super::ngrams::DIM),
        };
        Ok(Self { kind, model, dim })
    }

    pub fn kind(&self) -> EncoderKind {
        self.kind
    }

    /// Length of each feature vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// One feature vector per text: a neural encoder reads the text's first
    /// window in its own framing, n-grams read the whole text.
    pub fn encode(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        match &mut self.model {
            Model::Bert(m, input) => m.embed(&input.first_windows(texts)?),
            Model::NanoGuard(m, input) => m.pooled_features(&input.first_windows(texts)?),
            Model::CharNgrams => Ok(texts.iter().map(|t| super::ngrams::features(t)).collect()),
        }
    }
}

/// SHA-256 (hex) of the encoder's weights file in `dir` (for n-grams, of
/// their description).
pub fn weights_sha256(kind: EncoderKind, dir: &Path) -> Result<String> {
    if kind == EncoderKind::CharNgrams {
        return Ok(format!("{:x}", Sha256::digest(super::ngrams::spec().as_bytes())));
    }
    let path = dir.join(kind.weights_file());
    let mut file = std::fs::File::open(&path).map_err(|e| ModelError::load(path.display(), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| ModelError::load(path.display(), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}
