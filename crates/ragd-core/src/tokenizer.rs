//! The tokenizer seen by the engine and the server: text in, content token
//! ids out (no special tokens; [`crate::Framing`] adds them).

use crate::Result;

/// A token id and the byte range `start..end` of the text it came from.
pub type TokenSpan = (u32, (usize, usize));

pub trait TextTokenizer: Send + Sync {
    /// Content token ids of `text`, without special tokens, untruncated.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;
    /// Like [`Self::encode`], but special-token strings in `text` (such as
    /// `<|im_end|>`) are encoded as the plain text they are, never as the
    /// special token: for text from users and documents. The default suits
    /// tokenizers that never parse special tokens from text.
    fn encode_literal(&self, text: &str) -> Result<Vec<u32>> {
        self.encode(text)
    }
    /// Number of ids the model accepts; client-supplied ids must be below it.
    fn vocab_size(&self) -> usize;
    /// Text of `ids`, special tokens left out (generators' tokenizers).
    fn decode_text(&self, ids: &[u32]) -> Result<String> {
        let _ = ids;
        Err(crate::ModelError::Tokenizer(
            "this tokenizer does not decode".into(),
        ))
    }

    /// Every token's bytes, by id, for constrained decoding: what the token
    /// adds to the output text. Special tokens are `0xFF` followed by their
    /// name (`\xFF<|im_end|>`), the convention of llguidance's token trie.
    /// `None`: this tokenizer cannot say (no structured outputs then).
    fn token_bytes(&self) -> Option<Vec<Vec<u8>>> {
        None
    }

    /// [`Self::encode`] with, for each id, the byte range of `text` it came
    /// from, in text order: the ids are those `encode(text)` returns, the
    /// ranges lie within `text`, start on `char` boundaries and never go
    /// backwards (tokens of one character, e.g. byte-level pieces of an
    /// emoji, may share a range).
    ///
    /// Tokenizers that track offsets should override this (one pass over
    /// the text). The default encodes each whitespace-separated word with
    /// the whitespace before it (how WordPiece and byte-level BPE see it in
    /// a text) and spreads the word's bytes evenly over its tokens: linear
    /// in the text, exact at word boundaries, approximate inside a word.
    fn encode_with_offsets(&self, text: &str) -> Result<Vec<TokenSpan>> {
        let mut out = Vec::new();
        let mut prev_end = 0;
        for (start, end) in words(text) {
            let ids = self.encode(&text[prev_end..end])?;
            let n = ids.len();
            let len = end - start;
            for (i, id) in ids.into_iter().enumerate() {
                let a = floor_char_boundary(text, start + len * i / n);
                let b = floor_char_boundary(text, start + len * (i + 1) / n);
                out.push((id, (a, b.max(a))));
            }
            prev_end = end;
        }
        // Whitespace after the last word may still give tokens.
        if prev_end < text.len() {
            let ids = self.encode(&text[prev_end..])?;
            out.extend(ids.into_iter().map(|id| (id, (text.len(), text.len()))));
        }
        Ok(out)
    }
}

/// Byte ranges of the whitespace-separated words of `text`.
pub fn words(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut rest = text.char_indices().peekable();
    std::iter::from_fn(move || {
        while rest.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let (start, _) = rest.next()?;
        let mut end = text.len();
        while let Some(&(i, c)) = rest.peek() {
            if c.is_whitespace() {
                end = i;
                break;
            }
            rest.next();
        }
        Some((start, end))
    })
}

/// The largest `char` boundary of `s` at or below `i`.
fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per 2 bytes (rounded up) of each word.
    struct TwoBytes;
    impl TextTokenizer for TwoBytes {
        fn encode(&self, text: &str) -> Result<Vec<u32>> {
            Ok(text
                .split_whitespace()
                .flat_map(|w| (0..w.len().div_ceil(2) as u32).collect::<Vec<_>>())
                .collect())
        }
        fn vocab_size(&self) -> usize {
            1
        }
    }

    #[test]
    fn default_offsets_cover_each_word_in_order() {
        let text = "  abcd é日本\tx \n";
        let spans = TwoBytes.encode_with_offsets(text).unwrap();
        let ids: Vec<u32> = spans.iter().map(|s| s.0).collect();
        assert_eq!(ids, TwoBytes.encode(text).unwrap());
        let ranges: Vec<(usize, usize)> = spans.iter().map(|s| s.1).collect();
        // "abcd": 2 tokens over bytes 2..6; "é日本" (8 bytes): 4 tokens; "x": 1.
        assert_eq!(ranges[..2], [(2, 4), (4, 6)]);
        assert_eq!(ranges[6], (16, 17));
        for w in ranges.windows(2) {
            assert!(w[0].0 <= w[1].0 && w[0].1 <= w[1].1);
        }
        for (a, b) in ranges {
            assert!(text.is_char_boundary(a) && text.is_char_boundary(b) && a <= b);
        }
        assert!(TwoBytes.encode_with_offsets("").unwrap().is_empty());
        assert!(TwoBytes.encode_with_offsets(" \n ").unwrap().is_empty());
    }
}
