//! [`TextTokenizer`] over a Hugging Face `tokenizer.json`.

use std::path::Path;

use ragd_core::{ModelError, Result, TextTokenizer};
use tokenizers::Tokenizer;

use crate::error::tokenizer as tok_err;

/// A `tokenizers` tokenizer with padding and truncation switched off:
/// ragd frames (special tokens, truncation, windows) itself.
pub struct HfTokenizer {
    inner: Tokenizer,
}

impl HfTokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let mut inner = Tokenizer::from_file(path).map_err(|e| ModelError::load(path.display(), e))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| ModelError::load(path.display(), e))?;
        Ok(Self { inner })
    }

    /// The id of a special token such as `[CLS]`.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

impl TextTokenizer for HfTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(tok_err)?;
        Ok(enc.get_ids().to_vec())
    }

    fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn decode_text(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(tok_err)
    }
}
