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
mod tests;
