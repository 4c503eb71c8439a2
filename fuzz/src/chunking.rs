//! `chunking`: `ragd_index::chunk_text` over any text, with small chunk
//! sizes and overlaps and simple tokenizers, checking its promises:
//! chunks are pieces of the text, in order, each within the size (unless
//! it is a single character that alone is over it), together covering
//! every word, and a text with a word gives at least one chunk.
//!
//! Input layout: chunk size byte (1 + b % 16), overlap byte (b % 20, so at
//! times above the size), tokenizer byte, then the text (UTF-8, lossy).
//!
//! Self-contained (ragd-index's dependencies and dev-dependencies only):
//! also included by `crates/ragd-index/tests/fuzz_regressions.rs`.

use ragd_core::TextTokenizer;
use ragd_index::chunk_text;
use ragd_index::testing::WhitespaceTokenizer;

/// A token per byte.
struct Bytes;

impl TextTokenizer for Bytes {
    fn encode(&self, text: &str) -> ragd_core::Result<Vec<u32>> {
        Ok(text.bytes().map(u32::from).collect())
    }

    fn vocab_size(&self) -> usize {
        256
    }
}

/// A token per character.
struct Chars;

impl TextTokenizer for Chars {
    fn encode(&self, text: &str) -> ragd_core::Result<Vec<u32>> {
        Ok(text.chars().map(u32::from).collect())
    }

    fn vocab_size(&self) -> usize {
        0x11_0000
    }
}

/// A token per three bytes of each word (rounded up), whitespace free:
/// sub-word tokens, as WordPiece and BPE give.
struct Triples;

impl TextTokenizer for Triples {
    fn encode(&self, text: &str) -> ragd_core::Result<Vec<u32>> {
        Ok(text
            .split_whitespace()
            .flat_map(|w| w.as_bytes().chunks(3).map(|c| c[0].into()))
            .collect())
    }

    fn vocab_size(&self) -> usize {
        256
    }
}

pub fn run(data: &[u8]) {
    let [size, overlap, which, text @ ..] = data else {
        return;
    };
    let chunk_tokens = 1 + usize::from(size % 16);
    let overlap = usize::from(overlap % 20);
    let tokenizer: &dyn TextTokenizer = match which % 4 {
        0 => &WhitespaceTokenizer,
        1 => &Bytes,
        2 => &Chars,
        _ => &Triples,
    };
    let text = String::from_utf8_lossy(text);
    let chunks = chunk_text(&text, tokenizer, chunk_tokens, overlap).expect("chunk_text fails");
    let count = |s: &str| tokenizer.encode(s).expect("encode").len();
    let mut from = 0;
    for chunk in &chunks {
        assert!(!chunk.trim().is_empty(), "a blank chunk: {chunk:?}");
        // In order: each chunk starts after the start of the one before.
        let at = text[from..]
            .find(chunk.as_str())
            .unwrap_or_else(|| panic!("chunk {chunk:?} is not in the text after byte {from}"));
        let start = from + at;
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
        let tokens = count(chunk);
        assert!(
            tokens <= chunk_tokens || chunk.chars().count() == 1,
            "chunk {chunk:?} has {tokens} tokens, over {chunk_tokens}"
        );
    }
    let words = |s: &str| s.chars().filter(|c| !c.is_whitespace()).count();
    let covered: usize = chunks.iter().map(|c| words(c)).sum();
    assert!(covered >= words(&text), "the chunks leave out some of the text");
    if words(&text) > 0 {
        assert!(!chunks.is_empty(), "a text with words gives no chunk");
    }
}

/// Seeds: sentences, lines, long words, non-ASCII, blank text.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let texts: &[(&str, [u8; 3], &str)] = &[
        ("prose_ws", [7, 2, 0], "The first sentence ends here. The second one is a bit longer, and ends later! A third?\nA new line; then: more words."),
        ("prose_bytes", [15, 4, 1], "Short words and a loooooooooooooooooooooooooooong one.\n\nNext paragraph."),
        ("unicode_chars", [4, 1, 2], "héllo wörld 日本語のテキスト 🎉🎉🎉 e\u{301} \u{a0}nbsp\u{2003}em-space\u{200b}zwsp"),
        ("long_word_triples", [2, 1, 3], "supercalifragilisticexpialidocious a bb ccc dddd"),
        ("blank", [3, 0, 0], " \n\t \u{3000} "),
        ("overlap_over_size", [0, 19, 1], "a b c d e f g"),
    ];
    texts
        .iter()
        .map(|(name, head, text)| {
            let mut v = head.to_vec();
            v.extend_from_slice(text.as_bytes());
            (*name, v)
        })
        .collect()
}
