//! Rotary position embeddings applied in place, one position per token row.

/// How a head's dimensions are paired for rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Pairs `(2i, 2i+1)`: GGUF Llama weights (llama.cpp permutes Q/K so).
    Interleaved,
    /// Pairs `(i, i + head_dim/2)`: Hugging Face Llama checkpoints.
    Half,
}

/// Precomputed cos/sin tables, `[max_positions, head_dim / 2]`.
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
    style: RopeStyle,
}

impl Rope {
    /// Frequencies `1 / base^(2i/head_dim)`, computed in `f32` exactly as
    /// candle-transformers' Llama does, so results match it bit for bit.
    pub fn new(head_dim: usize, base: f32, max_positions: usize, style: RopeStyle) -> Self {
        let half = head_dim / 2;
        let theta: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1f32 / base.powf(i as f32 / head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(max_positions * half);
        let mut sin = Vec::with_capacity(max_positions * half);
        for p in 0..max_positions {
            for &t in &theta {
                let angle = p as f32 * t;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Self {
            cos,
            sin,
            half,
            style,
        }
    }

    /// The tables, `[max_positions, head_dim / 2]` each: device backends
    /// upload them to rotate with the same values.
    pub fn tables(&self) -> (&[f32], &[f32]) {
        (&self.cos, &self.sin)
    }

    pub fn max_positions(&self) -> usize {
        self.cos.len() / self.half.max(1)
    }

    /// Rotates every head of one token row (`n_heads * head_dim` values) for
    /// position `pos`.
    pub fn apply(&self, row: &mut [f32], pos: usize) {
        let half = self.half;
        let cos = &self.cos[pos * half..(pos + 1) * half];
        let sin = &self.sin[pos * half..(pos + 1) * half];
        for head in row.chunks_exact_mut(2 * half) {
            match self.style {
                RopeStyle::Interleaved => {
                    for i in 0..half {
                        let (a, b) = (head[2 * i], head[2 * i + 1]);
                        head[2 * i] = a * cos[i] - b * sin[i];
                        head[2 * i + 1] = a * sin[i] + b * cos[i];
                    }
                }
                RopeStyle::Half => {
                    for i in 0..half {
                        let (a, b) = (head[i], head[i + half]);
                        head[i] = a * cos[i] - b * sin[i];
                        head[i + half] = a * sin[i] + b * cos[i];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_zero_is_identity_and_rotation_keeps_norms() {
        for style in [RopeStyle::Interleaved, RopeStyle::Half] {
            let rope = Rope::new(8, 10_000.0, 16, style);
            let orig: Vec<f32> = (0..16).map(|i| i as f32 * 0.25 - 1.0).collect();
            let mut row = orig.clone();
            rope.apply(&mut row, 0);
            assert_eq!(row, orig);
            rope.apply(&mut row, 7);
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>();
            assert!((norm(&row) - norm(&orig)).abs() < 1e-4);
            assert_ne!(row, orig);
        }
    }

    #[test]
    fn relative_positions_give_equal_dot_products() {
        // RoPE's point: <R(p)q, R(p')k> depends only on p - p'.
        let rope = Rope::new(8, 100.0, 64, RopeStyle::Interleaved);
        let q: Vec<f32> = (0..8).map(|i| (i as f32).sin()).collect();
        let k: Vec<f32> = (0..8).map(|i| (i as f32 * 0.7).cos()).collect();
        let dot_at = |pq: usize, pk: usize| {
            let (mut a, mut b) = (q.clone(), k.clone());
            rope.apply(&mut a, pq);
            rope.apply(&mut b, pk);
            a.iter().zip(&b).map(|(x, y)| x * y).sum::<f32>()
        };
        assert!((dot_at(10, 3) - dot_at(40, 33)).abs() < 1e-4);
    }
}
