use super::*;
use crate::testing::WhitespaceTokenizer;

fn words(n: usize) -> String {
    (0..n).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ")
}

fn ntok(s: &str) -> usize {
    s.split_whitespace().count()
}

#[test]
fn windows_have_the_size_and_overlap_asked_for() {
    let text = words(100);
    let chunks = chunk_text(&text, &WhitespaceTokenizer, 10, 3).unwrap();
    for pair in chunks.windows(2) {
        let a: Vec<&str> = pair[0].split_whitespace().collect();
        let b: Vec<&str> = pair[1].split_whitespace().collect();
        assert_eq!(a.len(), 10);
        assert_eq!(a[7..], b[..3], "3 tokens shared");
    }
    // Every word is covered, in order, and the last chunk ends the text.
    assert!(chunks[0].starts_with("w0 "));
    assert!(chunks.last().unwrap().ends_with("w99"));
    // 100 words, stride 7: ceil((100 - 10) / 7) + 1 chunks.
    assert_eq!(chunks.len(), 14);
}

#[test]
fn no_overlap_tiles_the_text() {
    let text = words(25);
    let chunks = chunk_text(&text, &WhitespaceTokenizer, 10, 0).unwrap();
    assert_eq!(chunks.iter().map(|c| ntok(c)).collect::<Vec<_>>(), [10, 10, 5]);
    assert_eq!(chunks.join(" "), text);
}

#[test]
fn short_and_empty_texts() {
    assert!(chunk_text("", &WhitespaceTokenizer, 8, 2).unwrap().is_empty());
    assert!(chunk_text(" \n\t ", &WhitespaceTokenizer, 8, 2)
        .unwrap()
        .is_empty());
    assert_eq!(
        chunk_text("  just a  few words\n", &WhitespaceTokenizer, 8, 2).unwrap(),
        ["just a  few words"]
    );
    assert!(chunk_text("a", &WhitespaceTokenizer, 0, 0).is_err());
}

#[test]
fn prefers_to_cut_at_the_end_of_a_sentence() {
    let text = "one two three four five six. seven eight nine ten eleven twelve";
    let chunks = chunk_text(text, &WhitespaceTokenizer, 8, 0).unwrap();
    assert_eq!(chunks[0], "one two three four five six.");
    assert_eq!(chunks[1], "seven eight nine ten eleven twelve");
}

/// A tokenizer with one token per 3 bytes (rounded up) of each word, to
/// exercise words longer than a chunk.
struct ThreeBytes;
impl TextTokenizer for ThreeBytes {
    fn encode(&self, text: &str) -> ragd_core::Result<Vec<u32>> {
        Ok(text
            .split_whitespace()
            .flat_map(|w| vec![0u32; w.len().div_ceil(3)])
            .collect())
    }
    fn vocab_size(&self) -> usize {
        1
    }
}

#[test]
fn words_longer_than_a_chunk_are_split() {
    let long = "x".repeat(40);
    let text = format!("ab {long} cd");
    let chunks = chunk_text(&text, &ThreeBytes, 4, 1).unwrap();
    for c in &chunks {
        assert!(ThreeBytes.encode(c).unwrap().len() <= 4, "{c:?}");
    }
    // Nothing lost: the pieces of the long word cover it.
    let xs: usize = chunks.iter().map(|c| c.matches('x').count()).sum();
    assert!(xs >= 40);
    assert!(chunks[0].starts_with("ab"));
    assert!(chunks.last().unwrap().ends_with("cd"));
}

#[test]
fn sizes_hold_for_many_shapes() {
    let text = (0..300)
        .map(|i| {
            let w = "y".repeat(1 + (i * 7) % 13);
            if i % 11 == 0 {
                format!("{w}.\n")
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    for (size, overlap) in [(1, 0), (3, 1), (5, 4), (16, 4), (64, 16)] {
        let chunks = chunk_text(&text, &ThreeBytes, size, overlap).unwrap();
        assert!(!chunks.is_empty());
        for c in &chunks {
            assert!(ThreeBytes.encode(c).unwrap().len() <= size);
        }
    }
}

/// One token per character, counting the bytes it is asked to encode;
/// cancels `cancel` at its `cancel_at`-th call to `encode`.
#[derive(Default)]
struct Counting {
    bytes: std::sync::atomic::AtomicUsize,
    calls: std::sync::atomic::AtomicUsize,
    cancel: Cancel,
    cancel_at: usize,
}
impl TextTokenizer for Counting {
    fn encode(&self, text: &str) -> ragd_core::Result<Vec<u32>> {
        use std::sync::atomic::Ordering::Relaxed;
        self.bytes.fetch_add(text.len(), Relaxed);
        if self.calls.fetch_add(1, Relaxed) + 1 == self.cancel_at {
            self.cancel.cancel();
        }
        Ok(text
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(u32::from)
            .collect())
    }
    fn vocab_size(&self) -> usize {
        0x11_0000
    }
}

/// Regression (security review, issue 10): an upsert of 256K characters
/// of `a.a.a.` (one word) took 72 CPU-seconds, because over-long words
/// were bisected by re-encoding ever longer prefixes. The tokenizer now
/// sees each byte about twice, whatever the shape of the text.
#[test]
fn chunking_encodes_each_byte_a_bounded_number_of_times() {
    // Over 2 * SEGMENT bytes each, so they are encoded in segments.
    for text in [
        "a.".repeat(20_000),
        "日本語のテキスト。".repeat(2_000),
        words(6_000),
    ] {
        let tok = Counting::default();
        let chunks = chunk_text(&text, &tok, 64, 8).unwrap();
        let encoded = tok.bytes.into_inner();
        assert!(
            encoded <= 3 * text.len(),
            "{encoded} bytes encoded for a text of {}",
            text.len()
        );
        for c in &chunks {
            assert!(Counting::default().encode(c).unwrap().len() <= 64);
        }
        let chars = |s: &str| s.chars().filter(|c| !c.is_whitespace()).count();
        assert!(chunks.iter().map(|c| chars(c)).sum::<usize>() >= chars(&text));
        assert!(chunks
            .last()
            .unwrap()
            .ends_with(text.trim_end().chars().last().unwrap()));
    }
}

#[test]
fn cancellation_stops_chunking() {
    let text = "a.".repeat(10_000);
    let cancel = Cancel::new();
    cancel.cancel();
    let r = chunk_text_cancellable(&text, &WhitespaceTokenizer, 8, 2, &cancel);
    assert!(matches!(r, Err(IndexError::Cancelled)));
    // Set while the chunks are being made (the 5th encode of a chunk).
    let tok = Counting {
        cancel_at: 5,
        ..Counting::default()
    };
    let r = chunk_text_cancellable(&text, &tok, 8, 2, &tok.cancel);
    assert!(matches!(r, Err(IndexError::Cancelled)));
    assert!(tok.calls.into_inner() < 10);
}

/// Offsets of one token per character, but a text that starts with
/// anything other than `a` costs two more tokens on its own (like a
/// WordPiece continuation `##x` encoded without its word's start).
struct Continuations;
impl TextTokenizer for Continuations {
    fn encode(&self, text: &str) -> ragd_core::Result<Vec<u32>> {
        let mut ids: Vec<u32> = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(u32::from)
            .collect();
        if !ids.is_empty() && !text.starts_with('a') {
            ids.extend([0, 0]);
        }
        Ok(ids)
    }
    fn vocab_size(&self) -> usize {
        0x11_0000
    }
    fn encode_with_offsets(&self, text: &str) -> ragd_core::Result<Vec<(u32, (usize, usize))>> {
        Ok(text
            .char_indices()
            .filter(|(_, c)| !c.is_whitespace())
            .map(|(i, c)| (u32::from(c), (i, i + c.len_utf8())))
            .collect())
    }
}

#[test]
fn every_chunk_is_checked_with_the_tokenizer_itself() {
    let text = format!("{} ab. {}", "abc".repeat(50), "a-b".repeat(40));
    for (size, overlap) in [(3, 0), (7, 2), (16, 4)] {
        let chunks = chunk_text(&text, &Continuations, size, overlap).unwrap();
        for c in &chunks {
            assert!(
                Continuations.encode(c).unwrap().len() <= size || c.chars().count() == 1,
                "{c:?}"
            );
            assert!(text.contains(c.as_str()));
        }
        let chars = |s: &str| s.chars().filter(|c| !c.is_whitespace()).count();
        assert!(chunks.iter().map(|c| chars(c)).sum::<usize>() >= chars(&text));
    }
}

/// Tokens whose boundaries fall inside characters (one per 3 bytes of
/// each word): a character-level cut is the only way to fit.
#[test]
fn units_over_the_size_on_their_own_are_cut_between_characters() {
    let text = "🎉ab 日本語 x";
    let chunks = chunk_text(text, &ThreeBytes, 1, 0).unwrap();
    for c in &chunks {
        assert!(
            ThreeBytes.encode(c).unwrap().len() <= 1 || c.chars().count() == 1,
            "{c:?}"
        );
    }
    assert_eq!(chunks.concat(), text.split_whitespace().collect::<String>());
}
