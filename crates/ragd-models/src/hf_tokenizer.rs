//! [`TextTokenizer`] over a Hugging Face `tokenizer.json`.

use std::path::Path;

use ragd_core::{ModelError, Result, TextTokenizer};
use tokenizers::Tokenizer;

use crate::error::tokenizer as tok_err;

/// A `tokenizers` tokenizer with padding and truncation switched off:
/// ragd frames (special tokens, truncation, windows) itself.
pub struct HfTokenizer {
    inner: Tokenizer,
    /// The same tokenizer with special-token strings read as plain text.
    literal: Tokenizer,
}

impl HfTokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let mut inner = Tokenizer::from_file(path).map_err(|e| ModelError::load(path.display(), e))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| ModelError::load(path.display(), e))?;
        let mut literal = inner.clone();
        literal.set_encode_special_tokens(true);
        Ok(Self { inner, literal })
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

    fn encode_literal(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.literal.encode(text, false).map_err(tok_err)?;
        Ok(enc.get_ids().to_vec())
    }

    fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn decode_text(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(tok_err)
    }

    /// One pass: `Tokenizer::encode` on a `&str` reports byte offsets into
    /// that original string (normalisation mapped back).
    fn encode_with_offsets(&self, text: &str) -> Result<Vec<(u32, (usize, usize))>> {
        let enc = self.inner.encode(text, false).map_err(tok_err)?;
        Ok(enc
            .get_ids()
            .iter()
            .zip(enc.get_offsets())
            .map(|(&id, &(a, b))| (id, (a.min(text.len()), b.min(text.len()))))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The MiniLM tokenizer, when it is installed.
    fn minilm() -> Option<HfTokenizer> {
        let home = std::env::var_os("HOME")?;
        let path = Path::new(&home).join(".cache/ragd/models/all-minilm-l6-v2/tokenizer.json");
        path.exists().then(|| HfTokenizer::from_file(&path).unwrap())
    }

    #[test]
    fn offsets_are_byte_ranges_of_the_original_text() {
        let Some(tok) = minilm() else {
            eprintln!("skipped: no MiniLM tokenizer under ~/.cache/ragd/models");
            return;
        };
        let text = "  Ünïcode CAFÉ, 日本語のテキストです。 a.a.a. x\u{1F600}y\n";
        let spans = tok.encode_with_offsets(text).unwrap();
        let ids: Vec<u32> = spans.iter().map(|s| s.0).collect();
        assert_eq!(ids, tok.encode(text).unwrap());
        let mut last = 0;
        for &(id, (a, b)) in &spans {
            assert!(a <= b && b <= text.len() && a >= last, "{id} {a}..{b}");
            assert!(text.is_char_boundary(a) && text.is_char_boundary(b));
            last = a;
        }
        // Byte offsets, not char offsets: "語" starts at its byte position.
        let pos = text.find('語').unwrap();
        assert!(spans.iter().any(|s| s.1 == (pos, pos + '語'.len_utf8())));
        let cafe = text.find("CAFÉ").unwrap();
        assert_eq!(
            spans.iter().find(|s| s.1 .0 == cafe).map(|s| s.1 .1),
            Some(cafe + "CAFÉ".len())
        );
    }
}
