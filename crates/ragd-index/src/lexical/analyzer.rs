//! Text to index terms: Unicode word segmentation (UAX #29,
//! `unicode-segmentation`), lower case, English stopwords left out (NLTK's
//! list, `stop-words`), English Snowball stemming (`rust-stemmers`).
//!
//! Only words written in Latin letters are stemmed, so other languages
//! degrade to plain lower-cased words (CJK ideographs, which UAX #29
//! leaves as single-character words, become single-character terms).
//! Queries and documents go through the same function.

use std::collections::HashSet;
use std::sync::OnceLock;

use rust_stemmers::{Algorithm, Stemmer};
use unicode_segmentation::UnicodeSegmentation;

/// Longer words (base64, hashes, long URLs) are not indexed: they would
/// only grow the term dictionary.
const MAX_WORD_CHARS: usize = 64;

struct English {
    stemmer: Stemmer,
    stopwords: HashSet<&'static str>,
}

fn english() -> &'static English {
    static ENGLISH: OnceLock<English> = OnceLock::new();
    ENGLISH.get_or_init(|| English {
        stemmer: Stemmer::create(Algorithm::English),
        stopwords: stop_words::get("en").iter().copied().collect(),
    })
}

/// Whether the stemmer should see `word`: letters of the Latin script
/// only (apostrophes allowed, as in "don't" or "France's").
fn is_latin(word: &str) -> bool {
    word.chars().all(|c| {
        c == '\'' || c.is_ascii_alphabetic() || (c.is_alphabetic() && ('\u{c0}'..='\u{24f}').contains(&c))
    })
}

/// Calls `each` with every term of `text`, in order (repeats included).
pub(crate) fn for_each_term(text: &str, mut each: impl FnMut(&str)) {
    let english = english();
    for word in text.unicode_words() {
        if word.len() > MAX_WORD_CHARS && word.chars().count() > MAX_WORD_CHARS {
            continue;
        }
        let mut lower = word.to_lowercase();
        if lower.contains('\u{2019}') {
            // Typographic apostrophes count as ASCII ones ("don’t" = "don't").
            lower = lower.replace('\u{2019}', "'");
        }
        if english.stopwords.contains(lower.as_str()) {
            continue;
        }
        if is_latin(&lower) {
            each(&english.stemmer.stem(&lower));
        } else {
            each(&lower);
        }
    }
}

/// The terms of `text`, in order (for tests and `crate::bench`).
pub(crate) fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_term(text, |t| out.push(t.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_is_segmented_lowered_stopped_and_stemmed() {
        assert_eq!(
            terms("The Running dogs ran quickly; what is France's capital?"),
            ["run", "dog", "ran", "quick", "franc", "capit"]
        );
        // Typographic apostrophes, hyphens and numbers ("re", of "we're",
        // is a stopword too).
        assert_eq!(terms("Don’t re-index 3.14 or 1995"), ["index", "3.14", "1995"]);
        assert_eq!(terms("Connection CONNECTED connects"), ["connect"; 3]);
    }

    #[test]
    fn other_languages_become_plain_words() {
        // Cyrillic and Greek: lower-cased, not stemmed.
        assert_eq!(terms("Москва Столица"), ["москва", "столица"]);
        assert_eq!(terms("Αθήνα"), ["αθήνα"]);
        // Ideographs are single-character words under UAX #29.
        assert_eq!(terms("東京都"), ["東", "京", "都"]);
        // Accented Latin is stemmed like English (harmless: the same on
        // both sides).
        assert_eq!(terms("café"), terms("CAFÉ"));
        assert!(terms("").is_empty() && terms("  ,;!  ").is_empty());
        assert!(terms(&"x".repeat(65)).is_empty());
    }
}
