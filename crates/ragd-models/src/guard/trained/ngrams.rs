//! Hashed character n-grams: a frozen featurizer with no weights, beside
//! the neural encoders a trained guard can read.
//!
//! Prompt injections and jailbreaks repeat their wording ("ignore the
//! previous instructions", role-play set-ups, `### SYSTEM` banners), which
//! character n-grams catch and a 256-token sentence vector blurs: on the
//! guard's evaluation split a head on these features reaches 0.95+ TPR at a
//! 1% FPR where one on all-MiniLM-L6-v2's vector reaches 0.85 (README,
//! "Guardrails").
//!
//! What it computes (the `char_wb` analyzer of scikit-learn's
//! `HashingVectorizer`, with a stable hash): the text lowercased and split
//! on whitespace; each word padded with a space on both sides; every
//! n-gram of 2 to 5 characters of it (a padded word shorter than `n` counts
//! once, whole); each n-gram's UTF-8 bytes hashed by FNV-1a (64-bit) into
//! one of [`DIM`] buckets; a bucket's count `c` becomes `1 + ln c`; the
//! vector is scaled to unit length. Written here because the tokenizers
//! crate has no hashing vectorizer and the hash must never change between
//! versions (a head is trained against its buckets).

/// Buckets: enough that collisions cost little (8,192 lost about 0.01 TPR
/// in a scikit-learn check, 65,536 gained as little).
pub const DIM: usize = 16_384;
const MIN_N: usize = 2;
const MAX_N: usize = 5;

/// What identifies the featurizer (its "weights hash" is this string's
/// SHA-256): a change to any of it makes old heads refuse to load.
pub fn spec() -> String {
    format!("char_wb n-grams {MIN_N}-{MAX_N}, lowercase, FNV-1a 64 mod {DIM}, 1 + ln(count), unit length")
}

/// The feature vector of `text`.
pub fn features(text: &str) -> Vec<f32> {
    let mut counts = vec![0u32; DIM];
    let lower = text.to_lowercase();
    let mut padded: Vec<char> = Vec::new();
    let mut buf = [0u8; 4 * MAX_N];
    for word in lower.split_whitespace() {
        padded.clear();
        padded.push(' ');
        padded.extend(word.chars());
        padded.push(' ');
        for n in MIN_N..=MAX_N {
            if padded.len() <= n {
                counts[bucket(&padded, &mut buf)] += 1;
                break;
            }
            for gram in padded.windows(n) {
                counts[bucket(gram, &mut buf)] += 1;
            }
        }
    }
    let mut out: Vec<f32> = counts
        .iter()
        .map(|&c| if c == 0 { 0.0 } else { 1.0 + (c as f32).ln() })
        .collect();
    let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        out.iter_mut().for_each(|v| *v /= norm);
    }
    out
}

/// The bucket of the n-gram `chars` (at most [`MAX_N`] characters).
fn bucket(chars: &[char], buf: &mut [u8; 4 * MAX_N]) -> usize {
    let mut len = 0;
    for c in chars {
        len += c.encode_utf8(&mut buf[len..]).len();
    }
    (fnv1a(&buf[..len]) % DIM as u64) as usize
}

/// FNV-1a, 64-bit: tiny, stable, and spreads short strings well.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn words_give_padded_ngrams_counted_sublinearly() {
        let f = features("Hi hi yo");
        let mut buf = [0u8; 4 * MAX_N];
        let mut b = |s: &str| bucket(&s.chars().collect::<Vec<_>>(), &mut buf);
        // " hi " (4 characters): " h", "hi", "i ", " hi", "hi ", then the
        // whole " hi " for n = 4, and n = 5 is not reached. "hi" twice,
        // "yo" once.
        let two = 1.0 + 2f32.ln();
        let norm = (6.0 * two * two + 6.0).sqrt();
        for g in [" h", "hi", "i ", " hi", "hi ", " hi "] {
            assert!((f[b(g)] - two / norm).abs() < 1e-6, "{g:?}");
        }
        for g in [" y", "yo", "o ", " yo", "yo ", " yo "] {
            assert!((f[b(g)] - 1.0 / norm).abs() < 1e-6, "{g:?}");
        }
        assert_eq!(f.iter().filter(|&&v| v > 0.0).count(), 12);
    }

    #[test]
    fn empty_text_is_all_zero_and_case_does_not_matter() {
        assert!(features("  \n").iter().all(|&v| v == 0.0));
        assert_eq!(features("IGNORE previous"), features("ignore Previous"));
        assert_ne!(features("ignore"), features("ignored"));
    }
}
