//! Not a stable API: the HNSW shard a collection serves with, reachable
//! without a collection, for `examples/hnsw_bench.rs` (see
//! `benches/hnsw_vs_hnswlib.sh`). It measures the graph alone: no
//! write-ahead log, no document store, no [`crate::Hit`] assembly.
//! Likewise the lexical index, for `examples/lexical_bench.rs`.

use crate::config::HnswParams;
use crate::lexical::LexicalIndex;
use crate::shard::Shard;

/// A shard whose chunk ids are the vectors' positions.
pub struct BenchShard(Shard);

impl BenchShard {
    /// Builds the graph as a collection does when it loads a snapshot or
    /// compacts ([`Shard::build`]: one batch, inserted in parallel through
    /// rayon's global pool); vector `i` gets chunk id `i`.
    pub fn build(params: &HnswParams, vectors: &[&[f32]]) -> Self {
        let items: Vec<(u64, &[f32])> = vectors.iter().enumerate().map(|(i, v)| (i as u64, *v)).collect();
        Self(Shard::build(params, &items))
    }

    /// The unfiltered search of [`crate::Collection::search`]: the nearest
    /// `k` as `(chunk id, cosine distance)`, nearest first, with `ef`
    /// raised to `k` when smaller.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<(u64, f32)> {
        self.0.search(query, k, ef.max(k), None)
    }

    pub fn len(&self) -> usize {
        self.0.nodes()
    }

    pub fn is_empty(&self) -> bool {
        self.0.nodes() == 0
    }
}

/// A collection's lexical (BM25) index alone.
#[derive(Default)]
pub struct BenchLexical(LexicalIndex);

impl BenchLexical {
    /// Indexes `text` as chunk `chunk` (as an upsert or a load does).
    pub fn insert(&mut self, chunk: u64, text: &str) {
        self.0.insert(chunk, text);
    }

    /// The unfiltered lexical search of [`crate::Collection::query`]: the
    /// best `k` as `(chunk id, BM25 score)`.
    pub fn search(&self, query: &str, k: usize) -> Vec<(u64, f32)> {
        self.0.search(query, k, None)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// Distinct terms.
    pub fn vocabulary(&self) -> usize {
        self.0.vocabulary()
    }

    /// Bytes of dictionary, postings and slots (see `LexicalIndex::heap_bytes`).
    pub fn heap_bytes(&self) -> usize {
        self.0.heap_bytes()
    }
}

/// The index terms of `text` (segmented, lower-cased, stopwords out, stemmed).
pub fn lexical_terms(text: &str) -> Vec<String> {
    crate::lexical::terms(text)
}

/// Row-major matrix of f32 (a benchmark's vectors).
pub struct Mat {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Mat {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Correct answers among the first `k` of `found` (base row ids) for
/// `query`: a row counts when it is among the exact top `k` (`gt_ids`) or
/// no farther than the exact `k`-th (`gt_dist`, cosine distances), so ties
/// between equal vectors are not misses.
pub fn recall_hits(
    base: &Mat,
    query: &[f32],
    found: &[u64],
    gt_ids: &[i32],
    gt_dist: &[f32],
    k: usize,
) -> usize {
    let kth = gt_dist[k - 1] + 1e-5;
    found
        .iter()
        .take(k)
        .filter(|&&id| {
            gt_ids.contains(&(id as i32))
                || 1.0 - ragd_kernels::vector::dot(query, base.row(id as usize)) <= kth
        })
        .count()
}

pub fn le_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn le_i32(b: &[u8]) -> Vec<i32> {
    b.chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A 2-D `.npy` file's shape and raw little-endian items.
pub struct Npy {
    pub rows: usize,
    pub dim: usize,
    pub bytes: Vec<u8>,
}

/// Reads a 2-D C-order `.npy` of 4-byte items with dtype `descr`.
pub fn read_npy(path: &std::path::Path, descr: &str) -> Result<Npy, String> {
    use std::io::Read;
    let fail = |why: &str| format!("{}: {why}", path.display());
    let mut raw = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .map_err(|e| fail(&e.to_string()))?;
    if raw.len() < 10 || &raw[..6] != b"\x93NUMPY" {
        return Err(fail("not a .npy file"));
    }
    let (len, start) = match raw[6] {
        1 => (u16::from_le_bytes([raw[8], raw[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&raw[start..start + len]).map_err(|e| fail(&e.to_string()))?;
    if !header.contains(&format!("'descr': '{descr}'")) || !header.contains("'fortran_order': False") {
        return Err(fail(&format!("expected C-order {descr}, got {header}")));
    }
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| fail("no shape"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| fail(&format!("bad shape: {e}")))?;
    let [rows, dim] = dims[..] else {
        return Err(fail("not 2-D"));
    };
    let bytes = raw.split_off(start + len);
    if bytes.len() != rows * dim * 4 {
        return Err(fail("size does not match its shape"));
    }
    Ok(Npy { rows, dim, bytes })
}

/// A `.npy` of f32 rows.
pub fn read_npy_f32(path: &std::path::Path) -> Result<Mat, String> {
    let n = read_npy(path, "<f4")?;
    Ok(Mat {
        rows: n.rows,
        dim: n.dim,
        data: le_f32(&n.bytes),
    })
}
