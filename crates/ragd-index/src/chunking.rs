//! Token-aware chunking with overlap.
//!
//! Chunks are cut between words, never inside one (unless a single word is
//! longer than a chunk), and their length is measured in the embedding
//! model's tokens, so every chunk fits the model without truncation. When a
//! sentence or line ends in the second half of a full chunk, the chunk ends
//! there instead, so chunks tend to hold whole sentences.
//!
//! Only `TextTokenizer::encode` is used (embedding tokenizers need not
//! decode): each word is encoded with its leading whitespace, which is how
//! WordPiece and byte-level BPE see it inside a text. Chunk texts are
//! slices of the original text, whitespace and line breaks preserved.

use ragd_core::TextTokenizer;

use crate::{IndexError, Result};

/// A word (or a piece of an over-long word): byte range of its text and its
/// length in tokens.
struct Unit {
    start: usize,
    end: usize,
    tokens: usize,
    /// A sentence or line ends after this unit: a good place to cut.
    boundary: bool,
}

/// Splits `text` into chunks of at most `chunk_tokens` tokens, consecutive
/// chunks sharing about `overlap` tokens (whole words, at most `overlap`).
/// An empty or all-whitespace text gives no chunk.
pub fn chunk_text(
    text: &str,
    tokenizer: &dyn TextTokenizer,
    chunk_tokens: usize,
    overlap: usize,
) -> Result<Vec<String>> {
    if chunk_tokens == 0 {
        return Err(IndexError::InvalidInput("chunk_tokens must be at least 1".into()));
    }
    let overlap = overlap.min(chunk_tokens - 1);
    let units = units(text, tokenizer, chunk_tokens)?;
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < units.len() {
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
        chunks.push(text[units[start].start..units[end - 1].end].to_string());
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

/// Number of tokens of `s`.
fn count(tokenizer: &dyn TextTokenizer, s: &str) -> Result<usize> {
    Ok(tokenizer.encode(s)?.len())
}

/// The words of `text` with their token counts, over-long words split.
fn units(text: &str, tokenizer: &dyn TextTokenizer, chunk_tokens: usize) -> Result<Vec<Unit>> {
    let mut units: Vec<Unit> = Vec::new();
    let mut prev_end = 0;
    let words = text
        .char_indices()
        .filter(|(i, c)| !c.is_whitespace() && (*i == 0 || text[..*i].ends_with(char::is_whitespace)))
        .map(|(i, _)| i);
    for start in words {
        let end = text[start..]
            .find(char::is_whitespace)
            .map_or(text.len(), |n| start + n);
        let gap = &text[prev_end..start];
        if gap.contains('\n') {
            if let Some(last) = units.last_mut() {
                last.boundary = true;
            }
        }
        let tokens = count(tokenizer, &text[prev_end..end])?;
        if tokens <= chunk_tokens {
            units.push(Unit {
                start,
                end,
                tokens,
                boundary: false,
            });
        } else {
            split_long_word(text, prev_end, start, end, tokenizer, chunk_tokens, &mut units)?;
        }
        if let Some(last) = units.last_mut() {
            last.boundary |= text[..end].ends_with(['.', '!', '?', ';', ':']);
        }
        prev_end = end;
    }
    Ok(units)
}

/// Splits the word `text[start..end]` (whitespace from `ws_start`) into
/// pieces of at most `chunk_tokens` tokens: greedily, each piece the longest
/// prefix that fits (found by bisection over character boundaries).
fn split_long_word(
    text: &str,
    ws_start: usize,
    start: usize,
    end: usize,
    tokenizer: &dyn TextTokenizer,
    chunk_tokens: usize,
    units: &mut Vec<Unit>,
) -> Result<()> {
    let mut piece_start = start;
    let mut lead = ws_start;
    while piece_start < end {
        let bounds: Vec<usize> = text[piece_start..end]
            .char_indices()
            .map(|(i, c)| piece_start + i + c.len_utf8())
            .collect();
        // Largest k such that the piece ending at bounds[k] fits; at least
        // one character even if it alone is too long.
        let (mut lo, mut hi) = (0, bounds.len() - 1);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if count(tokenizer, &text[lead..bounds[mid]])? <= chunk_tokens {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let piece_end = bounds[lo];
        units.push(Unit {
            start: piece_start,
            end: piece_end,
            tokens: count(tokenizer, &text[lead..piece_end])?,
            boundary: false,
        });
        piece_start = piece_end;
        lead = piece_end;
    }
    Ok(())
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
}
