//! The in-memory content of one collection: documents, chunks, the HNSW
//! shard and the lexical (BM25) index, changed only by applying logged
//! operations, so that live writes and replay at start-up go through the
//! same code.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::HnswParams;
use crate::document::{DocumentInfo, DocumentSummary, Hit};
use crate::filter::{CompiledFilter, MetadataFilter};
use crate::hybrid::{fuse, hybrid_window, Fused, Fusion, Query, SearchMode};
use crate::lexical::LexicalIndex;
use crate::record::{DocRecord, WalEntry, WalOp};
use crate::shard::{cosine_distance, ChunkId, Shard};
use crate::snapshot::{DocRecordRef, Snapshot};
use crate::Metadata;

/// Filtered searches with at most this many candidate chunks are answered
/// exactly by brute force (cheap, and HNSW struggles with tiny subsets).
const EXACT_MAX_CANDIDATES: usize = 4096;
/// Largest sequence number and chunk id a collection accepts: far from
/// `u64::MAX`, so counting on from any of them never overflows. Only a
/// damaged or forged file holds larger ones.
pub(crate) const MAX_COUNTER: u64 = u64::MAX / 2;
/// Approximate searches widen `ef` up to this before falling back to exact.
const MAX_EF: usize = 4096;

struct Doc {
    metadata: Metadata,
    chunks: Vec<ChunkId>,
}

struct Chunk {
    doc_id: Arc<str>,
    index: usize,
    text: String,
    vector: Vec<f32>,
    data_id: usize,
    /// Its slot in the lexical index.
    lex_slot: u32,
}

pub(crate) struct State {
    docs: HashMap<Arc<str>, Doc>,
    chunks: HashMap<ChunkId, Chunk>,
    shard: Shard,
    lexical: LexicalIndex,
    /// Sequence number of the last applied log record.
    pub seq: u64,
    /// Next chunk id to hand out.
    pub next_chunk_id: u64,
}

impl State {
    pub fn empty(params: &HnswParams) -> Self {
        Self::from_snapshot(params, Snapshot::default())
            .unwrap_or_else(|_| unreachable!("an empty snapshot is consistent"))
    }

    /// The state a snapshot describes, its graph built in one batch. `Err`
    /// (a description) when the snapshot contradicts itself.
    pub fn from_snapshot(params: &HnswParams, snap: Snapshot) -> Result<Self, String> {
        let mut state = Self {
            docs: HashMap::new(),
            chunks: HashMap::new(),
            shard: Shard::build(params, &[]),
            lexical: LexicalIndex::default(),
            seq: snap.seq,
            next_chunk_id: snap.next_chunk_id,
        };
        state.check_insert(&snap.docs)?;
        state.insert_docs(snap.docs);
        state.rebuild_shard();
        Ok(state)
    }

    /// Applies a logged operation. Entries at or below the current sequence
    /// number are already applied and ignored, which makes replay idempotent.
    /// `Err` (a description, nothing changed) for an operation that
    /// contradicts the state: a record that no live write produces, from a
    /// damaged or forged file whose checksums hold.
    pub fn apply(&mut self, entry: WalEntry) -> Result<(), String> {
        if entry.seq <= self.seq {
            return Ok(());
        }
        if entry.seq > MAX_COUNTER {
            return Err(format!("sequence number {} is out of range", entry.seq));
        }
        if let WalOp::Upsert(docs) = &entry.op {
            self.check_insert(docs)?;
        }
        self.seq = entry.seq;
        match entry.op {
            WalOp::Upsert(docs) => {
                for d in &docs {
                    self.remove_doc(&d.id);
                }
                self.insert_docs(docs);
            }
            WalOp::Delete(ids) => {
                for id in &ids {
                    self.remove_doc(id);
                }
            }
        }
        Ok(())
    }

    /// Whether `docs` may replace their namesakes: no document id twice, no
    /// chunk id twice or held by a document that stays, no chunk id at
    /// or above [`MAX_COUNTER`]. Recovered files are checked
    /// with it, so a file that breaks these cannot corrupt the maps.
    pub(crate) fn check_insert(&self, docs: &[DocRecord]) -> Result<(), String> {
        let mut ids = std::collections::HashSet::new();
        if let Some(d) = docs.iter().find(|d| !ids.insert(d.id.as_str())) {
            return Err(format!("document `{}` appears twice in one record", d.id));
        }
        let mut chunk_ids = std::collections::HashSet::new();
        for c in docs.iter().flat_map(|d| &d.chunks) {
            if c.id >= MAX_COUNTER || !chunk_ids.insert(c.id) {
                return Err(format!("chunk id {} is invalid or used twice", c.id));
            }
            if let Some(held) = self.chunks.get(&c.id) {
                if !ids.contains(&*held.doc_id) {
                    return Err(format!("chunk id {} already belongs to `{}`", c.id, held.doc_id));
                }
            }
        }
        Ok(())
    }

    fn insert_docs(&mut self, docs: Vec<DocRecord>) {
        let items: Vec<(ChunkId, &[f32])> = docs
            .iter()
            .flat_map(|d| d.chunks.iter().map(|c| (c.id, c.vector.as_slice())))
            .collect();
        let mut data_ids = self.shard.insert(&items).into_iter();
        for doc in docs {
            let doc_id: Arc<str> = doc.id.into();
            let mut ids = Vec::with_capacity(doc.chunks.len());
            for (index, c) in doc.chunks.into_iter().enumerate() {
                self.next_chunk_id = self.next_chunk_id.max(c.id + 1);
                ids.push(c.id);
                let data_id = data_ids.next().unwrap_or(usize::MAX);
                let lex_slot = self.lexical.insert(c.id, &c.text);
                self.chunks.insert(
                    c.id,
                    Chunk {
                        doc_id: doc_id.clone(),
                        index,
                        text: c.text,
                        vector: c.vector,
                        data_id,
                        lex_slot,
                    },
                );
            }
            self.docs.insert(
                doc_id,
                Doc {
                    metadata: doc.metadata,
                    chunks: ids,
                },
            );
        }
    }

    /// Removes a document and tombstones its chunks (in the graph and the
    /// lexical index); false if absent.
    fn remove_doc(&mut self, id: &str) -> bool {
        let Some(doc) = self.docs.remove(id) else {
            return false;
        };
        for chunk_id in doc.chunks {
            if let Some(chunk) = self.chunks.remove(&chunk_id) {
                self.shard.remove(chunk.data_id);
                self.lexical.remove(chunk.lex_slot);
            }
        }
        true
    }

    /// Drops the tombstones of both indexes: rebuilds the graph from the
    /// live chunks and compacts the lexical index's posting lists.
    pub fn compact(&mut self) {
        self.rebuild_shard();
        let remap = self.lexical.compact();
        for c in self.chunks.values_mut() {
            c.lex_slot = remap[c.lex_slot as usize];
        }
    }

    /// Rebuilds the graph from the live chunks only (drops tombstones).
    pub fn rebuild_shard(&mut self) {
        let mut ids: Vec<ChunkId> = self.chunks.keys().copied().collect();
        ids.sort_unstable();
        let items: Vec<(ChunkId, &[f32])> = ids
            .iter()
            .map(|id| (*id, self.chunks[id].vector.as_slice()))
            .collect();
        let shard = Shard::build(self.shard.params(), &items);
        for (data_id, id) in ids.iter().enumerate() {
            if let Some(c) = self.chunks.get_mut(id) {
                c.data_id = data_id;
            }
        }
        self.shard = shard;
    }

    pub fn contains(&self, doc_id: &str) -> bool {
        self.docs.contains_key(doc_id)
    }

    pub fn documents(&self) -> usize {
        self.docs.len()
    }

    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    pub fn tombstones(&self) -> usize {
        self.shard.tombstones()
    }

    pub fn graph_nodes(&self) -> usize {
        self.shard.nodes()
    }

    pub fn document(&self, id: &str) -> Option<DocumentInfo> {
        let doc = self.docs.get(id)?;
        Some(DocumentInfo {
            id: id.to_string(),
            metadata: doc.metadata.clone(),
            chunks: doc.chunks.iter().map(|c| self.chunks[c].text.clone()).collect(),
        })
    }

    /// Up to `limit` documents with ids after `after` (all when `None`),
    /// in id order: one page of a listing, in time linear in the
    /// collection's size (no sorted copy of every id).
    pub fn list_documents(&self, after: Option<&str>, limit: usize) -> Vec<DocumentSummary> {
        let mut ids: Vec<&Arc<str>> = (self.docs.keys())
            .filter(|id| after.is_none_or(|a| &***id > a))
            .collect();
        if ids.len() > limit {
            ids.select_nth_unstable(limit);
            ids.truncate(limit);
        }
        ids.sort_unstable();
        ids.into_iter()
            .map(|id| {
                let doc = &self.docs[id];
                DocumentSummary {
                    id: id.to_string(),
                    metadata: doc.metadata.clone(),
                    chunks: doc.chunks.len(),
                }
            })
            .collect()
    }

    /// Every document, sorted by id, borrowed for a snapshot.
    pub fn snapshot_docs(&self) -> Vec<DocRecordRef<'_>> {
        let mut docs: Vec<DocRecordRef<'_>> = self
            .docs
            .iter()
            .map(|(id, doc)| DocRecordRef {
                id,
                metadata: &doc.metadata,
                chunks: doc
                    .chunks
                    .iter()
                    .map(|c| {
                        let chunk = &self.chunks[c];
                        (*c, chunk.text.as_str(), chunk.vector.as_slice())
                    })
                    .collect(),
            })
            .collect();
        docs.sort_unstable_by(|a, b| a.id.cmp(b.id));
        docs
    }

    /// The `top_k` chunks most similar to `query` among those `filter`
    /// lets through (dense search): see [`Self::dense`].
    pub fn search(
        &self,
        query: &[f32],
        top_k: usize,
        ef_search: usize,
        filter: Option<&MetadataFilter>,
    ) -> Vec<Hit> {
        let q = Query {
            vector: Some(query),
            text: "",
            mode: SearchMode::Dense,
            fusion: Fusion::default(),
            top_k,
            filter,
        };
        self.query(&q, ef_search)
    }

    /// The `top_k` best chunks for `q` among those its filter lets
    /// through: the dense list, the lexical list, or both fused (each
    /// retriever then fetches [`hybrid_window`] candidates). A mode that
    /// needs the vector finds nothing without one (the caller checks).
    pub fn query(&self, q: &Query<'_>, ef_search: usize) -> Vec<Hit> {
        let filter = q.filter.filter(|f| !f.is_empty()).map(MetadataFilter::compile);
        if q.top_k == 0 || self.chunks.is_empty() {
            return Vec::new();
        }
        let window = match q.mode {
            SearchMode::Hybrid => hybrid_window(q.top_k),
            _ => q.top_k,
        };
        let dense = match q.vector {
            Some(v) if q.mode.needs_vector() => self.dense(v, window, ef_search, filter.as_ref()),
            _ => Vec::new(),
        };
        let lexical = if q.mode == SearchMode::Dense {
            Vec::new()
        } else {
            let accept = filter.as_ref().map(|f| move |id| self.chunk_matches(f, id));
            let accept = accept.as_ref().map(|f| f as &dyn Fn(ChunkId) -> bool);
            self.lexical.search(q.text, window, accept)
        };
        (fuse(&dense, &lexical, q.mode, q.fusion, q.top_k).into_iter())
            .map(|f| self.hit(f))
            .collect()
    }

    fn hit(&self, f: Fused) -> Hit {
        let chunk = &self.chunks[&f.chunk];
        Hit {
            doc_id: chunk.doc_id.to_string(),
            chunk_id: f.chunk,
            chunk_index: chunk.index,
            score: f.score,
            dense: f.dense,
            lexical: f.lexical,
            text: chunk.text.clone(),
            metadata: self.docs[&chunk.doc_id].metadata.clone(),
        }
    }

    /// The `top_k` chunks most similar to `query` among those `filter`
    /// lets through, as `(chunk, cosine similarity)`, most similar first.
    /// Returns `top_k` whenever that many chunks match: tombstones and
    /// filtered-out chunks never shorten the list, because an approximate
    /// search that comes back short is widened and, failing that, replaced
    /// by an exact one.
    fn dense(
        &self,
        query: &[f32],
        top_k: usize,
        ef_search: usize,
        filter: Option<&CompiledFilter<'_>>,
    ) -> Vec<(ChunkId, f32)> {
        let found = match filter {
            None => {
                let k = top_k.min(self.chunks.len());
                self.approximate(query, k, ef_search, None)
                    .unwrap_or_else(|| self.exact(query, k, self.chunks.keys().copied()))
            }
            Some(f) => {
                let candidates = self.candidates(f);
                let k = top_k.min(candidates.len());
                if k == 0 {
                    Vec::new()
                } else if candidates.len() <= EXACT_MAX_CANDIDATES {
                    self.exact(query, k, candidates.into_iter())
                } else {
                    self.approximate(query, k, ef_search, Some(&|id| self.chunk_matches(f, id)))
                        .unwrap_or_else(|| self.exact(query, k, candidates.into_iter()))
                }
            }
        };
        (found.into_iter())
            .map(|(id, distance)| (id, 1.0 - distance))
            .collect()
    }

    fn chunk_matches(&self, filter: &CompiledFilter<'_>, id: ChunkId) -> bool {
        self.chunks
            .get(&id)
            .and_then(|c| Some((c, self.docs.get(&c.doc_id)?)))
            .is_some_and(|(c, doc)| filter.matches(&c.doc_id, &doc.metadata))
    }

    /// The live chunks of the documents `filter` lets through.
    fn candidates(&self, filter: &CompiledFilter<'_>) -> Vec<ChunkId> {
        let mut out = Vec::new();
        let mut take = |id: &str, doc: &Doc| {
            if filter.matches(id, &doc.metadata) {
                out.extend_from_slice(&doc.chunks);
            }
        };
        match &filter.doc_ids {
            // A short id list is cheaper to look up than to scan for.
            Some(ids) if ids.len() < self.docs.len() => {
                for (id, doc) in ids.iter().filter_map(|id| self.docs.get_key_value(*id)) {
                    take(id, doc);
                }
            }
            _ => {
                for (id, doc) in &self.docs {
                    take(id, doc);
                }
            }
        }
        out
    }

    /// HNSW search for `k` accepted chunks, widening `ef` while it comes
    /// back short; `None` if it never finds `k`.
    fn approximate(
        &self,
        query: &[f32],
        k: usize,
        ef_search: usize,
        accept: Option<&dyn Fn(ChunkId) -> bool>,
    ) -> Option<Vec<(ChunkId, f32)>> {
        let mut ef = ef_search.max(k);
        loop {
            let hits = self.shard.search(query, k, ef, accept);
            if hits.len() >= k {
                return Some(hits);
            }
            if ef >= MAX_EF.max(k) || ef >= self.shard.nodes() {
                return None;
            }
            ef = (ef * 4).min(MAX_EF.max(k));
        }
    }

    /// Exact top `k` among `candidates`, nearest first.
    fn exact(
        &self,
        query: &[f32],
        k: usize,
        candidates: impl Iterator<Item = ChunkId>,
    ) -> Vec<(ChunkId, f32)> {
        let mut scored: Vec<(ChunkId, f32)> = candidates
            .map(|id| (id, cosine_distance(query, &self.chunks[&id].vector)))
            .collect();
        let by_distance = |a: &(ChunkId, f32), b: &(ChunkId, f32)| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0));
        if scored.len() > k {
            scored.select_nth_unstable_by(k - 1, by_distance);
            scored.truncate(k);
        }
        scored.sort_unstable_by(by_distance);
        scored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ChunkRecord;

    fn upsert(seq: u64, id: &str, chunk_ids: &[u64]) -> WalEntry {
        WalEntry {
            seq,
            op: WalOp::Upsert(vec![DocRecord {
                id: id.into(),
                metadata: Metadata::new(),
                chunks: chunk_ids
                    .iter()
                    .map(|&c| ChunkRecord {
                        id: c,
                        text: format!("chunk {c}"),
                        vector: vec![1.0, c as f32],
                    })
                    .collect(),
            }]),
        }
    }

    #[test]
    fn applying_an_entry_twice_changes_nothing() {
        let mut s = State::empty(&HnswParams::default());
        let entries = [
            upsert(1, "a", &[0, 1]),
            upsert(2, "b", &[2]),
            upsert(3, "a", &[3]),
            WalEntry {
                seq: 4,
                op: WalOp::Delete(vec!["b".into()]),
            },
        ];
        for e in &entries {
            s.apply(e.clone()).unwrap();
        }
        for e in &entries {
            s.apply(e.clone()).unwrap();
        }
        assert_eq!((s.documents(), s.chunks(), s.seq, s.next_chunk_id), (1, 1, 4, 4));
        assert_eq!(s.document("a").unwrap().chunks, ["chunk 3"]);
        // Three replaced or deleted chunks are tombstones until a rebuild.
        assert_eq!(s.tombstones(), 3);
        s.rebuild_shard();
        assert_eq!(s.tombstones(), 0);
        let hits = s.search(&[1.0, 3.0], 5, 16, None);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].chunk_id, 3);
    }
}
