//! Search modes and the fusion of the dense (HNSW) and lexical (BM25)
//! ranked lists into one.

use serde::{Deserialize, Serialize};

use crate::shard::ChunkId;
use crate::{IndexError, Result};

/// Which retrievers a search runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Nearest vectors (cosine) only.
    Dense,
    /// BM25 over the chunk texts only.
    Lexical,
    /// Both, fused.
    #[default]
    Hybrid,
}

impl SearchMode {
    pub const ALL: [SearchMode; 3] = [Self::Dense, Self::Lexical, Self::Hybrid];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dense => "dense",
            Self::Lexical => "lexical",
            Self::Hybrid => "hybrid",
        }
    }

    /// The mode named `name` (`dense`, `lexical`, `hybrid`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Whether the search needs the query's vector.
    pub fn needs_vector(self) -> bool {
        self != Self::Lexical
    }
}

/// How a hybrid search merges its two ranked lists.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Fusion {
    /// Reciprocal-rank fusion (Cormack, Clarke and Büttcher, 2009): a
    /// chunk scores the sum over the lists it is in of 1 / (k + rank),
    /// ranks from 1. Scores never need to be comparable.
    Rrf { k: f32 },
    /// Each list's scores min-max normalised to 0..=1 over its candidates,
    /// then `dense_weight * dense + (1 - dense_weight) * lexical` (a list
    /// that misses the chunk counts 0): Weaviate's relative score fusion.
    Weighted { dense_weight: f32 },
}

/// The `k` of reciprocal-rank fusion when none is given (the paper's, and
/// Elasticsearch's, OpenSearch's and Qdrant's default).
pub const DEFAULT_RRF_K: f32 = 60.0;
/// The dense weight of weighted fusion when none is given.
pub const DEFAULT_DENSE_WEIGHT: f32 = 0.5;

impl Default for Fusion {
    fn default() -> Self {
        Self::Rrf { k: DEFAULT_RRF_K }
    }
}

impl Fusion {
    pub fn validate(self) -> Result<()> {
        match self {
            Self::Rrf { k } if !(k.is_finite() && k >= 0.0) => Err(IndexError::InvalidInput(format!(
                "the RRF k must be a finite number >= 0, got {k}"
            ))),
            Self::Weighted { dense_weight: w } if !(0.0..=1.0).contains(&w) => Err(IndexError::InvalidInput(
                format!("the dense weight must be in 0..=1, got {w}"),
            )),
            _ => Ok(()),
        }
    }
}

/// What [`crate::Collection::query`] looks for.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// The query's embedding: needed by `dense` and `hybrid`.
    pub vector: Option<&'a [f32]>,
    /// The query's text: what `lexical` and `hybrid` match terms of.
    pub text: &'a str,
    pub mode: SearchMode,
    /// How `hybrid` fuses (the other modes ignore it).
    pub fusion: Fusion,
    pub top_k: usize,
    pub filter: Option<&'a crate::MetadataFilter>,
}

/// A hit's place in one retriever's list.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Ranked {
    /// From 1.
    pub rank: usize,
    /// Cosine similarity (dense) or BM25 score (lexical).
    pub score: f32,
}

/// Each retriever fetches this many candidates for a hybrid search of
/// `top_k`, so a chunk ranked low by one and high by the other can rise.
/// Every store uses it (and [`fuse`]), so hybrid results agree across them.
pub fn hybrid_window(top_k: usize) -> usize {
    (top_k * 2).max(50)
}

/// One chunk of a fused list.
#[derive(Clone, Debug, PartialEq)]
pub struct Fused {
    pub chunk: ChunkId,
    /// The fused score (in a one-retriever mode, that retriever's score).
    pub score: f32,
    pub dense: Option<Ranked>,
    pub lexical: Option<Ranked>,
}

fn ranked(list: &[(ChunkId, f32)]) -> impl Iterator<Item = (ChunkId, Ranked)> + '_ {
    (list.iter().enumerate()).map(|(i, &(chunk, score))| (chunk, Ranked { rank: i + 1, score }))
}

/// `(min, max - min)` of a list's scores, for min-max normalisation.
fn span(list: &[(ChunkId, f32)]) -> (f32, f32) {
    let min = list.iter().map(|h| h.1).fold(f32::INFINITY, f32::min);
    let max = list.iter().map(|h| h.1).fold(f32::NEG_INFINITY, f32::max);
    (min, max - min)
}

/// The best `top_k` of `dense` and `lexical` (each best first), fused as
/// `mode` and `fusion` say; ties go to the lower chunk id. In `dense` or
/// `lexical` mode the other list is empty and scores are kept as they are.
pub fn fuse(
    dense: &[(ChunkId, f32)],
    lexical: &[(ChunkId, f32)],
    mode: SearchMode,
    fusion: Fusion,
    top_k: usize,
) -> Vec<Fused> {
    let mut by_chunk: std::collections::HashMap<ChunkId, Fused> = std::collections::HashMap::new();
    let fresh = |chunk| Fused {
        chunk,
        score: 0.0,
        dense: None,
        lexical: None,
    };
    for (chunk, r) in ranked(dense) {
        by_chunk.entry(chunk).or_insert_with(|| fresh(chunk)).dense = Some(r);
    }
    for (chunk, r) in ranked(lexical) {
        by_chunk.entry(chunk).or_insert_with(|| fresh(chunk)).lexical = Some(r);
    }
    let (dense_span, lexical_span) = (span(dense), span(lexical));
    // A list whose scores are all equal normalises to 1.
    let normalised = |r: Option<Ranked>, (min, width): (f32, f32)| {
        r.map_or(0.0, |r| if width > 0.0 { (r.score - min) / width } else { 1.0 })
    };
    let mut fused: Vec<Fused> = by_chunk.into_values().collect();
    for f in &mut fused {
        f.score = match (mode, fusion) {
            (SearchMode::Dense, _) => f.dense.map_or(0.0, |r| r.score),
            (SearchMode::Lexical, _) => f.lexical.map_or(0.0, |r| r.score),
            (SearchMode::Hybrid, Fusion::Rrf { k }) => [f.dense, f.lexical]
                .into_iter()
                .flatten()
                .map(|r| 1.0 / (k + r.rank as f32))
                .sum(),
            (SearchMode::Hybrid, Fusion::Weighted { dense_weight: w }) => {
                w * normalised(f.dense, dense_span) + (1.0 - w) * normalised(f.lexical, lexical_span)
            }
        };
    }
    fused.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.chunk.cmp(&b.chunk)));
    fused.truncate(top_k);
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(f: &[Fused]) -> Vec<ChunkId> {
        f.iter().map(|f| f.chunk).collect()
    }

    #[test]
    fn modes_parse_and_print() {
        for m in SearchMode::ALL {
            assert_eq!(SearchMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(SearchMode::parse("Dense"), None);
        assert_eq!(SearchMode::default(), SearchMode::Hybrid);
        assert!(Fusion::Rrf { k: f32::NAN }.validate().is_err());
        assert!(Fusion::Weighted { dense_weight: 1.5 }.validate().is_err());
        assert!(Fusion::default().validate().is_ok());
    }

    #[test]
    fn reciprocal_rank_fusion_rewards_agreement() {
        let dense = [(1, 0.9), (2, 0.8), (3, 0.7)];
        let lexical = [(3, 12.0), (4, 11.0), (2, 3.0)];
        let f = fuse(&dense, &lexical, SearchMode::Hybrid, Fusion::Rrf { k: 60.0 }, 10);
        // 2: 1/62 + 1/63; 3: 1/63 + 1/61; 1: 1/61; 4: 1/62.
        assert_eq!(chunks(&f), [3, 2, 1, 4]);
        assert!((f[0].score - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-7);
        assert_eq!(f[0].dense, Some(Ranked { rank: 3, score: 0.7 }));
        assert_eq!(f[0].lexical, Some(Ranked { rank: 1, score: 12.0 }));
        assert_eq!((f[2].dense.map(|r| r.rank), f[2].lexical), (Some(1), None));
        assert_eq!(
            chunks(&fuse(&dense, &lexical, SearchMode::Hybrid, Fusion::default(), 2)),
            [3, 2]
        );
        // Nothing lexical: the dense order.
        let f = fuse(&dense, &[], SearchMode::Hybrid, Fusion::default(), 10);
        assert_eq!(chunks(&f), [1, 2, 3]);
    }

    #[test]
    fn weighted_fusion_normalises_each_list() {
        let dense = [(1, 0.9), (2, 0.5)];
        let lexical = [(2, 20.0), (3, 10.0)];
        let weighted = |w| {
            fuse(
                &dense,
                &lexical,
                SearchMode::Hybrid,
                Fusion::Weighted { dense_weight: w },
                10,
            )
        };
        // Normalised: dense 1 -> 1, 2 -> 0; lexical 2 -> 1, 3 -> 0.
        let f = weighted(0.5);
        assert_eq!(chunks(&f), [1, 2, 3]);
        assert_eq!(f.iter().map(|f| f.score).collect::<Vec<_>>(), [0.5, 0.5, 0.0]);
        assert_eq!(chunks(&weighted(0.3)), [2, 1, 3]);
        assert_eq!(chunks(&weighted(1.0))[0], 1);
    }

    #[test]
    fn one_retriever_modes_keep_their_scores() {
        let dense = [(5, 0.9), (6, 0.4)];
        let f = fuse(&dense, &[], SearchMode::Dense, Fusion::default(), 10);
        assert_eq!(
            f.iter().map(|f| (f.chunk, f.score)).collect::<Vec<_>>(),
            [(5, 0.9), (6, 0.4)]
        );
        let f = fuse(&[], &[(7, 3.5)], SearchMode::Lexical, Fusion::default(), 10);
        assert_eq!(
            (f[0].score, f[0].dense, f[0].lexical.unwrap().rank),
            (3.5, None, 1)
        );
    }
}
