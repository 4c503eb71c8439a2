//! The tokenizer seen by the engine and the server: text in, content token
//! ids out (no special tokens; [`crate::Framing`] adds them).

use crate::Result;

pub trait TextTokenizer: Send + Sync {
    /// Content token ids of `text`, without special tokens, untruncated.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;
    /// Number of ids the model accepts; client-supplied ids must be below it.
    fn vocab_size(&self) -> usize;
    /// Text of `ids`, special tokens left out (generators' tokenizers).
    fn decode_text(&self, ids: &[u32]) -> Result<String> {
        let _ = ids;
        Err(crate::ModelError::Tokenizer(
            "this tokenizer does not decode".into(),
        ))
    }
}
