//! Fakes for tests of this crate and of its users (feature `testing`): a
//! whitespace tokenizer and a deterministic embedder, so index tests need
//! no model files and run in milliseconds.

use ragd_core::TextTokenizer;

/// One token per whitespace-separated word; the id is a hash of the word.
pub struct WhitespaceTokenizer;

impl TextTokenizer for WhitespaceTokenizer {
    fn encode(&self, text: &str) -> ragd_core::Result<Vec<u32>> {
        Ok(text
            .split_whitespace()
            .map(|w| fnv1a(w.as_bytes()) as u32)
            .collect())
    }

    fn vocab_size(&self) -> usize {
        u32::MAX as usize
    }
}

/// A deterministic "embedding": a hashed bag of lower-cased words,
/// normalised. Texts sharing words are close; a text with no words maps to
/// a fixed unit vector (so it is never the zero vector).
#[derive(Clone, Copy, Debug)]
pub struct HashEmbedder {
    pub dim: usize,
}

impl HashEmbedder {
    pub fn new(dim: usize) -> Self {
        assert!(dim > 0);
        Self { dim }
    }

    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dim];
        for w in text.split_whitespace() {
            let h = fnv1a(w.to_lowercase().as_bytes());
            let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
            v[(h % self.dim as u64) as usize] += sign;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm == 0.0 {
            v[0] = 1.0;
        } else {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }

    /// Embeds a batch; the signature fits `Collection::upsert_with`.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, std::convert::Infallible> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }
}

/// A tiny deterministic random generator (SplitMix64) for seeded tests,
/// so they need no `rand` dependency and never change between versions.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[-1, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// FNV-1a, finished with SplitMix64's mixer (FNV's low bits alone, which
/// pick the vector component, are poorly spread).
fn fnv1a(bytes: &[u8]) -> u64 {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    SplitMix64(h).next_u64()
}
