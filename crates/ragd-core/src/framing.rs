//! How a model turns a text's content tokens into the sequences it runs:
//! special tokens around the content, and what happens past the window.

/// What to do with content longer than the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Keep the first tokens, drop the rest (embedders, like sentence-transformers).
    Truncate,
    /// Split into consecutive windows, each framed; the caller scores them
    /// all and takes the max (classifiers: an attack hidden at the end of a
    /// long text must not escape).
    Windows,
}

/// Special tokens and window size of a model's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framing {
    pub prefix: Vec<u32>,
    pub suffix: Vec<u32>,
    /// Longest framed sequence, special tokens included.
    pub max_len: usize,
    pub overflow: Overflow,
}

impl Framing {
    /// Content tokens that fit in one window.
    pub fn content_len(&self) -> usize {
        self.max_len
            .saturating_sub(self.prefix.len() + self.suffix.len())
            .max(1)
    }

    /// Frames `content` into one sequence (truncated) or several windows.
    /// Empty content still gives one sequence of special tokens.
    pub fn frame(&self, content: &[u32]) -> Vec<Vec<u32>> {
        let n = self.content_len();
        let chunks: Vec<&[u32]> = match self.overflow {
            Overflow::Truncate => vec![&content[..content.len().min(n)]],
            Overflow::Windows if content.is_empty() => vec![content],
            Overflow::Windows => content.chunks(n).collect(),
        };
        chunks
            .into_iter()
            .map(|c| {
                let mut seq = Vec::with_capacity(self.prefix.len() + c.len() + self.suffix.len());
                seq.extend_from_slice(&self.prefix);
                seq.extend_from_slice(c);
                seq.extend_from_slice(&self.suffix);
                seq
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(overflow: Overflow) -> Framing {
        Framing {
            prefix: vec![101],
            suffix: vec![102],
            max_len: 5,
            overflow,
        }
    }

    #[test]
    fn truncates_to_the_window() {
        let f = framing(Overflow::Truncate);
        assert_eq!(f.frame(&[1, 2, 3, 4, 5]), vec![vec![101, 1, 2, 3, 102]]);
        assert_eq!(f.frame(&[]), vec![vec![101, 102]]);
    }

    #[test]
    fn splits_into_windows() {
        let f = framing(Overflow::Windows);
        assert_eq!(
            f.frame(&[1, 2, 3, 4, 5]),
            vec![vec![101, 1, 2, 3, 102], vec![101, 4, 5, 102]]
        );
        assert_eq!(f.frame(&[]), vec![vec![101, 102]]);
    }
}
