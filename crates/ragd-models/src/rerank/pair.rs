//! How a cross-encoder frames a (query, document) pair into one sequence.

use ragd_core::{Framing, Overflow};

/// `prefix query middle document suffix`: `[CLS] q [SEP] d [SEP]` for
/// BERT, `<s> q </s></s> d </s>` for RoBERTa and XLM-R.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairFraming {
    pub prefix: Vec<u32>,
    pub middle: Vec<u32>,
    pub suffix: Vec<u32>,
    /// Longest framed pair, special tokens included.
    pub max_len: usize,
}

impl PairFraming {
    /// One sequence of the pair: `query` and `document` cut to fit
    /// `max_len` as Hugging Face tokenizers' `longest_first` truncation
    /// does (what sentence-transformers' `CrossEncoder` uses): the shorter
    /// text is kept whole when the longer one can give up enough, else
    /// both get half the room.
    pub fn frame(&self, query: &[u32], document: &[u32]) -> Vec<u32> {
        let specials = self.prefix.len() + self.middle.len() + self.suffix.len();
        let room = self.max_len.saturating_sub(specials);
        let (nq, nd) = longest_first(query.len(), document.len(), room);
        let mut seq = Vec::with_capacity(specials + nq + nd);
        for part in [
            &self.prefix[..],
            &query[..nq],
            &self.middle,
            &document[..nd],
            &self.suffix,
        ] {
            seq.extend_from_slice(part);
        }
        seq
    }

    /// The framing of a single text (what `/v1/models` shows).
    pub fn single(&self) -> Framing {
        Framing {
            prefix: self.prefix.clone(),
            suffix: self.suffix.clone(),
            max_len: self.max_len,
            overflow: Overflow::Truncate,
        }
    }
}

/// Lengths the two texts keep within `room` tokens (tokenizers'
/// `TruncationStrategy::LongestFirst` on a pair).
fn longest_first(n1: usize, n2: usize, room: usize) -> (usize, usize) {
    if n1 + n2 <= room {
        return (n1, n2);
    }
    let (short, long) = (n1.min(n2), n1.max(n2));
    let (mut keep_short, mut keep_long) = (short, room.saturating_sub(short).max(short));
    if short > room {
        keep_long = short;
    }
    if keep_short + keep_long > room {
        keep_short = room / 2;
        keep_long = keep_short + room % 2;
    }
    let keep_long = keep_long.min(long);
    if n1 > n2 {
        (keep_long, keep_short)
    } else {
        (keep_short, keep_long)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bert(max_len: usize) -> PairFraming {
        PairFraming {
            prefix: vec![101],
            middle: vec![102],
            suffix: vec![102],
            max_len,
        }
    }

    #[test]
    fn frames_a_pair_and_keeps_short_ones_whole() {
        assert_eq!(bert(10).frame(&[1, 2], &[3]), vec![101, 1, 2, 102, 3, 102]);
        assert_eq!(bert(10).frame(&[], &[]), vec![101, 102, 102]);
    }

    #[test]
    fn cuts_the_longer_text_first() {
        // Room 7: a query of 2 keeps everything, the document gives up.
        let doc: Vec<u32> = (10..30).collect();
        let seq = bert(10).frame(&[1, 2], &doc);
        assert_eq!(seq, [&[101, 1, 2, 102][..], &doc[..5], &[102]].concat());
        // Both long: half each, the odd token to the longer one.
        let q: Vec<u32> = (100..110).collect();
        assert_eq!(longest_first(10, 20, 7), (3, 4));
        assert_eq!(longest_first(20, 10, 7), (4, 3));
        let seq = bert(10).frame(&q, &doc);
        assert_eq!(seq.len(), 10);
        assert_eq!(&seq[1..4], &q[..3]);
        // The shorter one over the room alone.
        assert_eq!(longest_first(9, 12, 7), (3, 4));
        assert_eq!(longest_first(12, 12, 7), (3, 4));
        assert_eq!(longest_first(3, 3, 0), (0, 0));
    }
}
