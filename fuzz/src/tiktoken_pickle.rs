//! `tiktoken_pickle`: NanoGuard's `tokenizer.pkl` reader
//! (`ragd_models::guard::tiktoken_pickle`), then the tokenizer built from
//! what it read, as `TiktokenTokenizer::from_pickle` does.
//!
//! Self-contained (ragd-models' dependencies only): also included by
//! `crates/ragd-models/tests/fuzz_regressions.rs`.

use ragd_core::TextTokenizer;
use ragd_models::guard::tiktoken_pickle::parse_tiktoken_pickle;
use ragd_models::guard::TiktokenTokenizer;

/// Encodings larger than this are parsed but not built into a tokenizer:
/// building costs far more than parsing and finds nothing new.
const MAX_BUILT_RANKS: usize = 1024;

pub fn run(data: &[u8]) {
    let Ok(state) = parse_tiktoken_pickle(data) else {
        return;
    };
    if state.mergeable_ranks.len() > MAX_BUILT_RANKS {
        return;
    }
    let Ok(tokenizer) = TiktokenTokenizer::new(state.mergeable_ranks, state.special_tokens, &state.pattern)
    else {
        return;
    };
    // `encode` catches tiktoken's panic on a regex that gives up.
    let ids =
        crate::panics::with_caught_panics(|| tokenizer.encode("Hello, world! 123 <|endoftext|>  \n\tx"));
    if let Ok(ids) = ids {
        let vocab = tokenizer.vocab_size();
        assert!(
            ids.iter().all(|&id| (id as usize) < vocab),
            "an id at or above vocab_size {vocab}"
        );
    }
}

/// A pickled tiny `Encoding`, written with the opcodes of the real file
/// (the same as the unit test's).
pub fn tiny_pickle() -> Vec<u8> {
    let mut p = vec![0x80, 4, 0x95];
    p.extend_from_slice(&0u64.to_le_bytes());
    let s = |p: &mut Vec<u8>, t: &str| {
        p.push(0x8c);
        p.push(t.len() as u8);
        p.extend_from_slice(t.as_bytes());
        p.push(0x94);
    };
    s(&mut p, "tiktoken.core");
    s(&mut p, "Encoding");
    p.extend_from_slice(&[0x93, 0x94, b')', 0x81, 0x94, b'}', 0x94, b'(']);
    s(&mut p, "name");
    s(&mut p, "t");
    s(&mut p, "pat_str");
    s(&mut p, "\\s?\\w+|[^\\s\\w]+|\\s+");
    s(&mut p, "mergeable_ranks");
    p.extend_from_slice(&[b'}', 0x94, b'(']);
    for b in 0u8..=255 {
        p.extend_from_slice(&[b'C', 1, b]);
        if b < 128 {
            p.extend_from_slice(&[b'K', b]);
        } else {
            p.extend_from_slice(&[b'M', b, 0]);
        }
    }
    p.extend_from_slice(&[b'C', 2, b'l', b'o', b'M', 0, 1, 0x94]);
    p.extend_from_slice(&[b'B', 3, 0, 0, 0, b' ', b'l', b'o', b'J', 1, 1, 0, 0, b'u']);
    s(&mut p, "special_tokens");
    p.extend_from_slice(b"}(");
    s(&mut p, "<|endoftext|>");
    p.extend_from_slice(&[b'J', 2, 1, 0, 0]);
    p.extend_from_slice(&[b'X', 5, 0, 0, 0]);
    p.extend_from_slice(b"<|x|>");
    p.extend_from_slice(&[b'M', 3, 1, b'u', b'u', b'b', b'.']);
    p
}
