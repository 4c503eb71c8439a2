//! [`TextTokenizer`] over a pickled tiktoken encoding (NanoGuard's
//! `tokenizer.pkl`), with `tiktoken-rs` doing the split and the BPE.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use ragd_core::{ModelError, Result, TextTokenizer};
use tiktoken_rs::CoreBPE;

use super::tiktoken_pickle::parse_tiktoken_pickle;

/// A byte-level BPE tokenizer; `encode` is tiktoken's `encode_ordinary`
/// (special-token text is encoded as ordinary text, never as a special id).
pub struct TiktokenTokenizer {
    bpe: CoreBPE,
    specials: HashMap<String, u32>,
    vocab_size: usize,
}

impl TiktokenTokenizer {
    /// Reads a pickled `tiktoken.core.Encoding`.
    pub fn from_pickle(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::load(path.display(), e))?;
        let state = parse_tiktoken_pickle(&bytes).map_err(|e| ModelError::load(path.display(), e))?;
        Self::new(state.mergeable_ranks, state.special_tokens, &state.pattern)
            .map_err(|e| ModelError::load(path.display(), e))
    }

    /// Builds the tokenizer; ids must be unique over ranks and specials
    /// (`CoreBPE::new` would panic on duplicate ranks).
    pub fn new(
        ranks: Vec<(Vec<u8>, u32)>,
        specials: Vec<(String, u32)>,
        pattern: &str,
    ) -> Result<Self, String> {
        let mut seen = HashSet::new();
        let ids = ranks
            .iter()
            .map(|(_, id)| *id)
            .chain(specials.iter().map(|(_, id)| *id));
        if let Some(dup) = ids.clone().find(|id| !seen.insert(*id)) {
            return Err(format!("token id {dup} is used twice"));
        }
        let vocab_size = ids.max().map_or(0, |m| m as usize + 1);
        let mut seen_bytes = HashSet::new();
        if let Some((b, _)) = ranks.iter().find(|(b, _)| !seen_bytes.insert(b.as_slice())) {
            return Err(format!("token {b:?} is listed twice"));
        }
        if ranks.is_empty() {
            return Err("the encoding has no tokens".into());
        }
        let specials_map: HashMap<String, u32> = specials.iter().cloned().collect();
        let bpe = CoreBPE::new(
            ranks.into_iter().collect(),
            specials.into_iter().collect(),
            pattern,
        )
        .map_err(|e| format!("bad encoding: {e}"))?;
        Ok(Self {
            bpe,
            specials: specials_map,
            vocab_size,
        })
    }

    /// The id of a special token such as `<|reserved_0|>`.
    pub fn special_token(&self, name: &str) -> Option<u32> {
        self.specials.get(name).copied()
    }
}

/// Longest run without whitespace that is encoded in one piece. BPE merges
/// within a pre-tokenizer piece in time quadratic in its length (a 64 KB
/// run of letters took 30 CPU-seconds), so longer runs are cut into pieces
/// of this size first. No ordinary word comes near it.
const MAX_RUN_BYTES: usize = 128;

/// `text` cut into segments, each to be encoded on its own: the cuts fall
/// only inside runs of non-whitespace longer than [`MAX_RUN_BYTES`].
fn segments(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut run) = (0, 0);
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            run = 0;
            continue;
        }
        if run >= MAX_RUN_BYTES {
            out.push(&text[start..i]);
            start = i;
            run = 0;
        }
        run += c.len_utf8();
    }
    out.push(&text[start..]);
    out
}

impl TextTokenizer for TiktokenTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        // tiktoken unwraps the regex match, which fails (panics) only if
        // fancy-regex exceeds its backtrack limit on a pathological input.
        let bpe = &self.bpe;
        let encode = |s: &str| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bpe.encode_ordinary(s)))
                .map_err(|_| ModelError::Tokenizer("the pre-tokeniser regex gave up on this input".into()))
        };
        let mut ids = Vec::new();
        for segment in segments(text) {
            ids.extend(encode(segment)?);
        }
        Ok(ids)
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> TiktokenTokenizer {
        let mut ranks: Vec<(Vec<u8>, u32)> = (0u8..=255).map(|b| (vec![b], b as u32)).collect();
        ranks.push((b"ab".to_vec(), 256));
        ranks.push((b" ab".to_vec(), 257));
        let specials = vec![("<|s|>".to_string(), 258)];
        TiktokenTokenizer::new(ranks, specials, r"\s?\w+|[^\s\w]+|\s+").expect("tokenizer")
    }

    #[test]
    fn encodes_ordinary_text() {
        let t = tiny();
        assert_eq!(t.encode("ab ab abc").unwrap(), vec![256, 257, 257, 99]);
        // Special-token text is plain text here.
        assert_eq!(t.encode("<|s|>").unwrap().len(), 5);
        assert_eq!(t.vocab_size(), 259);
        assert_eq!(t.special_token("<|s|>"), Some(258));
    }

    #[test]
    fn long_runs_are_cut_and_ordinary_text_is_not() {
        let text = "a few words, then ";
        assert_eq!(segments(text), [text]);
        let run = "x".repeat(300);
        let long = format!("ab {run} cd");
        let parts = segments(&long);
        assert_eq!(parts.concat(), long);
        assert!(
            parts.len() == 3,
            "{:?}",
            parts.iter().map(|p| p.len()).collect::<Vec<_>>()
        );
        // Multi-byte characters are never split.
        let kana = "あ".repeat(100);
        assert_eq!(segments(&kana).concat(), kana);
        // Every byte of a cut run is still encoded.
        let t = tiny();
        let ids = t.encode(&"ab".repeat(200)).unwrap();
        assert_eq!(ids, vec![256; 200]);
    }

    #[test]
    fn rejects_duplicate_ids() {
        let ranks = vec![(b"a".to_vec(), 0), (b"b".to_vec(), 0)];
        assert!(TiktokenTokenizer::new(ranks, vec![], r"\w+").is_err());
    }
}
