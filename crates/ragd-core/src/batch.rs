//! A batch of already tokenized sequences, stored flat (ids plus cumulative
//! lengths) so that no tensor type leaks out of the model crates.

/// Token ids of several sequences, concatenated; sequence `i` is
/// `input_ids[cu_seq_lens[i]..cu_seq_lens[i + 1]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenBatch {
    pub input_ids: Vec<u32>,
    pub cu_seq_lens: Vec<usize>,
}

impl TokenBatch {
    pub fn new() -> Self {
        Self {
            input_ids: Vec::new(),
            cu_seq_lens: vec![0],
        }
    }

    /// Builds a batch from separate sequences.
    pub fn from_sequences<S: AsRef<[u32]>>(seqs: &[S]) -> Self {
        let mut b = Self::new();
        for s in seqs {
            b.push(s.as_ref());
        }
        b
    }

    pub fn push(&mut self, ids: &[u32]) {
        if self.cu_seq_lens.is_empty() {
            self.cu_seq_lens.push(0);
        }
        self.input_ids.extend_from_slice(ids);
        self.cu_seq_lens.push(self.input_ids.len());
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.cu_seq_lens.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn seq(&self, i: usize) -> &[u32] {
        &self.input_ids[self.cu_seq_lens[i]..self.cu_seq_lens[i + 1]]
    }

    pub fn seqs(&self) -> impl Iterator<Item = &[u32]> + '_ {
        (0..self.len()).map(|i| self.seq(i))
    }

    /// Length of the longest sequence (0 for an empty batch).
    pub fn max_len(&self) -> usize {
        self.seqs().map(<[u32]>::len).max().unwrap_or(0)
    }

    /// Total number of tokens over all sequences.
    pub fn num_tokens(&self) -> usize {
        self.input_ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_layout_round_trips() {
        let b = TokenBatch::from_sequences(&[vec![1, 2, 3], vec![], vec![4]]);
        assert_eq!(b.len(), 3);
        assert_eq!(b.seq(0), &[1, 2, 3]);
        assert!(b.seq(1).is_empty());
        assert_eq!(b.seq(2), &[4]);
        assert_eq!(b.max_len(), 3);
        assert_eq!(b.num_tokens(), 4);
    }
}
