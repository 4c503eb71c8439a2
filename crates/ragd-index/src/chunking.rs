//! Token-aware chunking with overlap.
//!
//! Chunks are cut between words, never inside one (unless a single word is
//! longer than a chunk: then between its tokens), and their length is
//! measured in the embedding model's tokens, so every chunk fits the model
//! without truncation. When a sentence or line ends in the second half of a
//! full chunk, the chunk ends there instead, so chunks tend to hold whole
//! sentences. Chunk texts are slices of the original text, whitespace and
//! line breaks preserved.
//!
//! Linear in the text: it is encoded once, with offsets
//! ([`TextTokenizer::encode_with_offsets`]); each token is assigned to the
//! word its offset falls in, and over-long words are cut at token
//! boundaries. Counts summed from offsets are exact at word boundaries for
//! WordPiece and byte-level BPE, but a piece cut from inside a word may
//! encode differently on its own, so each chunk is encoded once more to
//! check its size (and shortened, by bisection, in the rare case it is
//! over): about two passes of the tokenizer over the text in all.

use ragd_core::tokenizer::words;
use ragd_core::TextTokenizer;

use crate::{Cancel, IndexError, Result};

/// Words between two cancellation checks while building units.
const CHECK_EVERY: usize = 4096;
/// Bytes of text per call of the tokenizer (see [`encode_in_segments`]).
const SEGMENT: usize = 16 << 10;

/// A word (or a piece of an over-long word): byte range of its text and its
/// length in tokens.
#[derive(Debug)]
struct Unit {
    start: usize,
    end: usize,
    tokens: usize,
    /// A sentence or line ends after this unit: a good place to cut.
    boundary: bool,
}

/// Splits `text` into chunks of at most `chunk_tokens` tokens, consecutive
/// chunks sharing about `overlap` tokens (whole words, at most `overlap`).
/// An empty or all-whitespace text gives no chunk. A chunk is over
/// `chunk_tokens` only when it is a single character the tokenizer counts
/// as more tokens.
pub fn chunk_text(
    text: &str,
    tokenizer: &dyn TextTokenizer,
    chunk_tokens: usize,
    overlap: usize,
) -> Result<Vec<String>> {
    chunk_text_cancellable(text, tokenizer, chunk_tokens, overlap, &Cancel::new())
}

/// [`chunk_text`] that gives up with [`IndexError::Cancelled`] once
/// `cancel` is set (checked per chunk and every few thousand words).
pub fn chunk_text_cancellable(
    text: &str,
    tokenizer: &dyn TextTokenizer,
    chunk_tokens: usize,
    overlap: usize,
    cancel: &Cancel,
) -> Result<Vec<String>> {
    if chunk_tokens == 0 {
        return Err(IndexError::InvalidInput("chunk_tokens must be at least 1".into()));
    }
    cancel.check()?;
    let overlap = overlap.min(chunk_tokens - 1);
    let units = units(text, tokenizer, chunk_tokens, cancel)?;
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < units.len() {
        cancel.check()?;
        // Take as many units as fit.
        let mut end = start;
        let mut used = 0;
        while end < units.len() && used + units[end].tokens <= chunk_tokens {
            used += units[end].tokens;
            end += 1;
        }
        let end = end.max(start + 1);
        // Not the last chunk: prefer to end at a sentence in its second half.
        let end = if end < units.len() {
            let mut acc = 0;
            let mut best = end;
            for (i, u) in units[start..end].iter().enumerate() {
                acc += u.tokens;
                if u.boundary && acc * 2 >= used && i + 1 < end - start {
                    best = start + i + 1;
                }
            }
            best
        } else {
            end
        };
        let (end, fits) = fit(text, &units, start, end, tokenizer, chunk_tokens)?;
        let unit = &units[start];
        if !fits && text[unit.start..unit.end].chars().nth(1).is_some() {
            // A single unit the tokenizer counts as over on its own (a
            // tokenizer without offsets, whose token boundaries fall inside
            // characters): cut it between characters, without overlap.
            split_by_chars(
                text,
                unit.start,
                unit.end,
                tokenizer,
                chunk_tokens,
                &mut chunks,
                cancel,
            )?;
        } else {
            chunks.push(text[unit.start..units[end - 1].end].to_string());
        }
        if end == units.len() {
            break;
        }
        // Step back over whole units worth at most `overlap` tokens, always
        // moving forward by at least one unit.
        let mut next = end;
        let mut shared = 0;
        while next > start + 1 && shared + units[next - 1].tokens <= overlap {
            shared += units[next - 1].tokens;
            next -= 1;
        }
        start = next;
    }
    Ok(chunks)
}

/// The largest `e` in `start + 1..=end` whose chunk `units[start..e]` the
/// tokenizer itself counts within `chunk_tokens`, and whether it does:
/// `(start + 1, false)` when not even one unit does. One encode of the
/// chunk when it fits, as it nearly always does; a bisection (a few more)
/// when it does not.
fn fit(
    text: &str,
    units: &[Unit],
    start: usize,
    end: usize,
    tokenizer: &dyn TextTokenizer,
    chunk_tokens: usize,
) -> Result<(usize, bool)> {
    let fits = |e: usize| -> Result<bool> {
        let n = tokenizer
            .encode(&text[units[start].start..units[e - 1].end])?
            .len();
        Ok(n <= chunk_tokens)
    };
    if fits(end)? {
        return Ok((end, true));
    }
    let (mut lo, mut hi) = (start + 1, end - 1);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid)? {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok((lo, lo > start + 1 || (lo < end && fits(lo)?)))
}

/// Cuts the unit `text[start..end]` (no whitespace in it) into chunks of
/// at most `chunk_tokens` tokens between characters (a character alone may
/// be over): each the longest prefix that fits, found by galloping then
/// bisecting over its length in characters, so the cost follows the
/// piece's size, not the rest of the unit.
fn split_by_chars(
    text: &str,
    start: usize,
    end: usize,
    tokenizer: &dyn TextTokenizer,
    chunk_tokens: usize,
    chunks: &mut Vec<String>,
    cancel: &Cancel,
) -> Result<()> {
    // bounds[k]: where character k of the unit ends.
    let bounds: Vec<usize> = text[start..end]
        .char_indices()
        .map(|(i, c)| start + i + c.len_utf8())
        .collect();
    let mut done = 0;
    let mut from = start;
    while done < bounds.len() {
        cancel.check()?;
        let left = bounds.len() - done;
        let fits = |k: usize| -> Result<bool> {
            Ok(tokenizer.encode(&text[from..bounds[done + k - 1]])?.len() <= chunk_tokens)
        };
        // `lo` characters fit (one always counts as fitting), `hi` do not.
        let (mut lo, mut hi) = (1, left + 1);
        while lo < left {
            let k = (2 * lo).min(left);
            if fits(k)? {
                lo = k;
            } else {
                hi = k;
                break;
            }
        }
        while lo + 1 < hi && lo < left {
            let mid = (lo + hi) / 2;
            if fits(mid)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let to = bounds[done + lo - 1];
        chunks.push(text[from..to].to_string());
        done += lo;
        from = to;
    }
    Ok(())
}

/// Whether `s` ends a sentence or clause (a good place to cut).
fn ends_sentence(s: &str) -> bool {
    s.ends_with([
        '.', '!', '?', ';', ':', '\u{3002}', '\u{ff01}', '\u{ff1f}', '\u{ff1b}', '\u{ff1a}',
    ])
}

/// The words of `text` with their token counts, over-long words cut between
/// tokens. The text is encoded once; each token belongs to the word its
/// start offset falls in (or, if it starts in whitespace, the next word).
fn units(
    text: &str,
    tokenizer: &dyn TextTokenizer,
    chunk_tokens: usize,
    cancel: &Cancel,
) -> Result<Vec<Unit>> {
    let spans = encode_in_segments(text, tokenizer, cancel)?;
    let mut units: Vec<Unit> = Vec::new();
    let mut prev_end = 0;
    let mut next_token = 0;
    for (i, (start, end)) in words(text).enumerate() {
        if i % CHECK_EVERY == CHECK_EVERY - 1 {
            cancel.check()?;
        }
        if text[prev_end..start].contains('\n') {
            if let Some(last) = units.last_mut() {
                last.boundary = true;
            }
        }
        let first = next_token;
        while next_token < spans.len() && spans[next_token].1 .0 < end {
            next_token += 1;
        }
        let tokens = &spans[first..next_token];
        if tokens.len() <= chunk_tokens {
            units.push(Unit {
                start,
                end,
                tokens: tokens.len(),
                boundary: false,
            });
        } else {
            split_long_word(text, start, end, tokens, &mut units);
        }
        if let Some(last) = units.last_mut() {
            last.boundary |= ends_sentence(&text[start..end]);
        }
        prev_end = end;
    }
    // Tokens after the last word (from trailing whitespace, if a tokenizer
    // gives any) are counted with it, so no count is ever low.
    if let Some(last) = units.last_mut() {
        last.tokens += spans.len() - next_token;
    }
    Ok(units)
}

/// [`TextTokenizer::encode_with_offsets`] of `text`, in segments of about
/// [`SEGMENT`] bytes (offsets shifted back into `text`). One huge encode
/// is slower per byte than several small ones (the tokenizer's working set
/// outgrows the caches) and holds its whole state at once. Segments end
/// after whitespace where there is some, else after a sentence end, else
/// at any character: tokens at a cut inside a word may differ from the
/// whole text's, which only shifts a count that [`fit`] checks anyway.
fn encode_in_segments(
    text: &str,
    tokenizer: &dyn TextTokenizer,
    cancel: &Cancel,
) -> Result<Vec<(u32, (usize, usize))>> {
    let mut spans = Vec::new();
    let mut from = 0;
    while from < text.len() {
        cancel.check()?;
        let to = if text.len() - from <= 2 * SEGMENT {
            text.len()
        } else {
            let at = ceil_char_boundary(text, from + SEGMENT);
            let window = &text[at..ceil_char_boundary(text, at + SEGMENT)];
            let after = |i: usize| at + i + window[i..].chars().next().map_or(0, char::len_utf8);
            window
                .find(char::is_whitespace)
                .or_else(|| window.find(|c: char| ends_sentence(c.encode_utf8(&mut [0; 4]))))
                .map_or(at, after)
        };
        let piece = tokenizer.encode_with_offsets(&text[from..to])?;
        spans.extend(
            piece
                .into_iter()
                .map(|(id, (a, b))| (id, (from + a.min(to - from), from + b.min(to - from)))),
        );
        from = to;
    }
    Ok(spans)
}

/// The smallest `char` boundary of `s` at or above `i` (its length past it).
fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Cuts the word `text[start..end]`, whose tokens are `tokens`, into one
/// unit per token: before each token that starts further into the word on
/// a character boundary (tokens sharing a start, such as the byte-level
/// pieces of one character, stay together).
fn split_long_word(
    text: &str,
    start: usize,
    end: usize,
    tokens: &[(u32, (usize, usize))],
    units: &mut Vec<Unit>,
) {
    let mut piece_start = start;
    let mut n = 0;
    for &(_, (at, _)) in tokens {
        if n > 0 && at > piece_start && at < end && text.is_char_boundary(at) {
            units.push(Unit {
                start: piece_start,
                end: at,
                tokens: n,
                boundary: ends_sentence(&text[piece_start..at]),
            });
            piece_start = at;
            n = 0;
        }
        n += 1;
    }
    units.push(Unit {
        start: piece_start,
        end,
        tokens: n,
        boundary: false,
    });
}

#[cfg(test)]
mod tests {
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
}
