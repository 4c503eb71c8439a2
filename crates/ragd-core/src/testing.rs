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

/// What one [`FakeGenerator`] step looked like: `(start_pos, len,
/// want_logits)` per chunk, in chunk order.
pub type FakeStep = Vec<(usize, usize, bool)>;

/// Shared view of a [`FakeGenerator`] that has been moved into an engine:
/// the steps it ran, and a switch to make its next steps fail.
#[derive(Clone, Default)]
pub struct FakeGeneratorProbe {
    steps: std::sync::Arc<std::sync::Mutex<Vec<FakeStep>>>,
    fail_next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeGeneratorProbe {
    /// Every step run so far (failed ones included), oldest first.
    pub fn steps(&self) -> Vec<FakeStep> {
        self.steps.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Chunks (sequences) per step, oldest first.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.steps().iter().map(Vec::len).collect()
    }

    /// Makes the next `n` steps return an error.
    pub fn fail_next_steps(&self, n: usize) {
        self.fail_next.store(n, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A deterministic causal "language model" with a real paged KV cache.
///
/// Every step writes each chunk's tokens into the cache at the slots its
/// block table names, then, for chunks that want logits, reads the whole
/// history back through the block table and predicts
/// [`FakeGenerator::next_token`] of it. So a wrong block table, a block
/// shared by two sequences or a freed block reused while still needed gives
/// a wrong token, and a read of a slot never written is an error.
pub struct FakeGenerator {
    info: ModelInfo,
    vocab: usize,
    context_len: usize,
    layout: crate::KvLayout,
    /// The "KV cache": the token id stored at `block * block_size + slot`.
    kv: Vec<Option<u32>>,
    delay: Option<std::time::Duration>,
    fail_token: Option<u32>,
    panic_token: Option<u32>,
    probe: FakeGeneratorProbe,
}

impl FakeGenerator {
    pub fn new(vocab: usize, context_len: usize, block_size: usize, num_blocks: usize) -> Self {
        assert!(vocab > 0 && block_size > 0);
        Self {
            info: ModelInfo::generator("fake-generator", context_len),
            vocab,
            context_len,
            layout: crate::KvLayout {
                block_size,
                num_blocks,
                bytes_per_block: block_size * 4,
            },
            kv: vec![None; block_size * num_blocks],
            delay: None,
            fail_token: None,
            panic_token: None,
            probe: FakeGeneratorProbe::default(),
        }
    }

    /// Sleeps this long in every step (to let requests pile up).
    pub fn with_delay(mut self, delay: std::time::Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// A step with `token` in any chunk returns an error.
    pub fn with_fail_token(mut self, token: u32) -> Self {
        self.fail_token = Some(token);
        self
    }

    /// A step with `token` in any chunk panics.
    pub fn with_panic_token(mut self, token: u32) -> Self {
        self.panic_token = Some(token);
        self
    }

    /// A handle that stays valid after the model is moved into an engine.
    pub fn probe(&self) -> FakeGeneratorProbe {
        self.probe.clone()
    }

    /// The token the model predicts after `history` (order-sensitive).
    pub fn next_token(vocab: usize, history: &[u32]) -> u32 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &t in history {
            h = (h ^ (u64::from(t) + 1)).wrapping_mul(0x0100_0000_01b3);
        }
        h = h.wrapping_mul(31).wrapping_add(history.len() as u64);
        ((h ^ (h >> 29)) % vocab as u64) as u32
    }

    /// What greedy decoding produces alone, computed without any cache:
    /// up to `max_tokens` tokens, stopping before the first of `stop`.
    pub fn reference(vocab: usize, prompt: &[u32], max_tokens: usize, stop: &[u32]) -> Vec<u32> {
        let mut history = prompt.to_vec();
        let mut out = Vec::new();
        while out.len() < max_tokens {
            let t = Self::next_token(vocab, &history);
            if stop.contains(&t) {
                break;
            }
            out.push(t);
            history.push(t);
        }
        out
    }

    fn slot(&self, blocks: &[u32], pos: usize) -> Result<usize> {
        let bs = self.layout.block_size;
        let block = *blocks.get(pos / bs).ok_or_else(|| {
            crate::ModelError::Inference(format!("position {pos} is outside the block table"))
        })? as usize;
        if block >= self.layout.num_blocks {
            return Err(crate::ModelError::Inference(format!(
                "block {block} out of range"
            )));
        }
        Ok(block * bs + pos % bs)
    }
}

impl crate::Generator for FakeGenerator {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn vocab_size(&self) -> usize {
        self.vocab
    }
    fn context_len(&self) -> usize {
        self.context_len
    }
    fn kv_layout(&self) -> crate::KvLayout {
        self.layout
    }
    fn step(&mut self, chunks: &[crate::SeqChunk<'_>]) -> Result<Vec<Vec<f32>>> {
        use crate::ModelError;
        self.probe.steps.lock().unwrap_or_else(|e| e.into_inner()).push(
            chunks
                .iter()
                .map(|c| (c.start_pos, c.tokens.len(), c.want_logits))
                .collect(),
        );
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        let has = |tok: Option<u32>| tok.is_some_and(|t| chunks.iter().any(|c| c.tokens.contains(&t)));
        if has(self.panic_token) {
            panic!("fake generator: injected panic");
        }
        if has(self.fail_token) {
            return Err(ModelError::Inference("fake generator: injected failure".into()));
        }
        let fail = &self.probe.fail_next;
        let ord = std::sync::atomic::Ordering::SeqCst;
        if fail.fetch_update(ord, ord, |n| n.checked_sub(1)).is_ok() {
            return Err(ModelError::Inference("fake generator: injected failure".into()));
        }
        let mut rows = Vec::new();
        for c in chunks {
            if c.tokens.is_empty() {
                return Err(ModelError::Inference("empty chunk".into()));
            }
            let end = c.start_pos + c.tokens.len();
            if end > self.context_len {
                return Err(ModelError::Inference(format!("position {end} past the context")));
            }
            for (i, &t) in c.tokens.iter().enumerate() {
                if t as usize >= self.vocab {
                    return Err(ModelError::InvalidInput(format!("token {t} out of vocabulary")));
                }
                let s = self.slot(c.blocks, c.start_pos + i)?;
                self.kv[s] = Some(t);
            }
            if c.want_logits {
                let history = (0..end)
                    .map(|p| {
                        self.kv[self.slot(c.blocks, p)?].ok_or_else(|| {
                            ModelError::Inference(format!("read of unwritten KV slot at position {p}"))
                        })
                    })
                    .collect::<Result<Vec<u32>>>()?;
                let mut row = vec![0f32; self.vocab];
                row[Self::next_token(self.vocab, &history) as usize] = 10.0;
                rows.push(row);
            }
        }
        Ok(rows)
    }
}
