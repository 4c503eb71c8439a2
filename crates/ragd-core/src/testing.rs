//! Fake models for fast engine and server tests.

use crate::{Classifier, Embedder, Framing, ModelInfo, ModelKind, Overflow, Result, TokenBatch};

/// An embedder whose vector is a deterministic function of the token ids:
/// component `j` counts the ids congruent to `j` modulo `dim`, normalised.
pub struct FakeEmbedder {
    info: ModelInfo,
    dim: usize,
    /// Every batch size seen, for batching assertions.
    pub batch_sizes: Vec<usize>,
}

impl FakeEmbedder {
    pub fn new(dim: usize, max_input_tokens: usize) -> Self {
        Self {
            info: ModelInfo {
                id: "fake-embedder".into(),
                kind: ModelKind::Embedder,
                framing: Framing {
                    prefix: vec![],
                    suffix: vec![],
                    max_len: max_input_tokens,
                    overflow: Overflow::Truncate,
                },
            },
            dim,
            batch_sizes: Vec::new(),
        }
    }

    pub fn vector_for(dim: usize, ids: &[u32]) -> Vec<f32> {
        let mut v = vec![0f32; dim];
        for &id in ids {
            v[id as usize % dim] += 1.0;
        }
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= n);
        v
    }
}

impl Embedder for FakeEmbedder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed(&mut self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        self.batch_sizes.push(batch.len());
        Ok(batch.seqs().map(|s| Self::vector_for(self.dim, s)).collect())
    }
}

/// A classifier that flags a sequence containing `trigger`.
pub struct FakeClassifier {
    info: ModelInfo,
    labels: Vec<String>,
    trigger: u32,
}

impl FakeClassifier {
    pub fn new(trigger: u32, max_input_tokens: usize) -> Self {
        Self {
            info: ModelInfo {
                id: "fake-guard".into(),
                kind: ModelKind::Guard,
                framing: Framing {
                    prefix: vec![],
                    suffix: vec![],
                    max_len: max_input_tokens,
                    overflow: Overflow::Windows,
                },
            },
            labels: vec!["safe".into(), "injection".into()],
            trigger,
        }
    }
}

impl Classifier for FakeClassifier {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn labels(&self) -> &[String] {
        &self.labels
    }
    fn classify(&mut self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        Ok(batch
            .seqs()
            .map(|s| {
                if s.contains(&self.trigger) {
                    vec![0.1, 0.9]
                } else {
                    vec![0.9, 0.1]
                }
            })
            .collect())
    }
}
