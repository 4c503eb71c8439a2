//! A collection's lexical index: BM25 over the same chunks as its HNSW
//! shard, in memory.
//!
//! An inverted index of our own rather than tantivy (the reasons and the
//! measurements are in the README, "Hybrid search"): a term dictionary
//! (term -> id), one posting list per term (`(slot, term frequency)`, in
//! slot order), and a slot table (slot -> chunk and its length in terms).
//!
//! Like the shard it is never written to disk: it is derived from the chunk
//! texts, which the write-ahead log and the snapshot hold, and it changes
//! only where the shard does (`State::insert_docs`, `State::remove_doc`),
//! so live writes and replay at start-up keep it equal to the chunk store
//! by construction; an acknowledged chunk is searchable after any crash.
//!
//! A removed chunk's slot becomes a tombstone (searches skip it and the
//! statistics leave it out at once); [`LexicalIndex::compact`] drops
//! tombstones from the posting lists, when the shard is rebuilt.

mod analyzer;

use std::collections::HashMap;

pub(crate) use analyzer::{for_each_term, terms};

use crate::shard::ChunkId;

/// BM25 term-frequency saturation (Lucene's and Elasticsearch's default).
const K1: f32 = 1.2;
/// BM25 length normalisation (Lucene's and Elasticsearch's default).
const B: f32 = 0.75;

/// A slot number meaning "no slot" (a chunk whose slot was compacted away
/// never exists: every live chunk keeps one).
pub(crate) const NO_SLOT: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Posting {
    slot: u32,
    /// Occurrences of the term in the slot's chunk.
    tf: u32,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    /// `None` for a tombstone.
    chunk: Option<ChunkId>,
    /// Terms in the chunk (repeats included).
    len: u32,
}

#[derive(Default)]
pub(crate) struct LexicalIndex {
    terms: HashMap<Box<str>, u32>,
    /// By term id; each list in increasing slot order.
    postings: Vec<Vec<Posting>>,
    slots: Vec<Slot>,
    live: usize,
    /// Sum of `len` over the live slots (for the average chunk length).
    live_terms: u64,
}

impl LexicalIndex {
    /// Indexes `text` as chunk `chunk`; returns its slot.
    pub fn insert(&mut self, chunk: ChunkId, text: &str) -> u32 {
        let slot = u32::try_from(self.slots.len()).unwrap_or(NO_SLOT - 1);
        let mut ids = Vec::new();
        for_each_term(text, |term| {
            let id = match self.terms.get(term) {
                Some(&id) => id,
                None => {
                    let id = self.postings.len() as u32;
                    self.terms.insert(term.into(), id);
                    self.postings.push(Vec::new());
                    id
                }
            };
            ids.push(id);
        });
        ids.sort_unstable();
        for run in ids.chunk_by(|a, b| a == b) {
            self.postings[run[0] as usize].push(Posting {
                slot,
                tf: run.len() as u32,
            });
        }
        let len = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        self.slots.push(Slot {
            chunk: Some(chunk),
            len,
        });
        self.live += 1;
        self.live_terms += u64::from(len);
        slot
    }

    /// Turns `slot` into a tombstone: searches and statistics skip it.
    pub fn remove(&mut self, slot: u32) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            if s.chunk.take().is_some() {
                self.live -= 1;
                self.live_terms -= u64::from(s.len);
            }
        }
    }

    /// Tombstones still in the posting lists.
    #[cfg(test)]
    pub fn tombstones(&self) -> usize {
        self.slots.len() - self.live
    }

    /// Drops the tombstones: posting lists keep only live slots, slots are
    /// renumbered in order, terms left without postings are forgotten.
    /// Returns the new slot of each old one ([`NO_SLOT`] for tombstones).
    pub fn compact(&mut self) -> Vec<u32> {
        let mut remap = vec![NO_SLOT; self.slots.len()];
        let mut slots = Vec::with_capacity(self.live);
        for (old, s) in self.slots.iter().enumerate() {
            if s.chunk.is_some() {
                remap[old] = slots.len() as u32;
                slots.push(*s);
            }
        }
        let mut postings = Vec::new();
        let old_postings = std::mem::take(&mut self.postings);
        let mut old_postings: Vec<Option<Vec<Posting>>> = old_postings.into_iter().map(Some).collect();
        self.terms.retain(|_, id| {
            let mut list = old_postings[*id as usize].take().unwrap_or_default();
            list.retain_mut(|p| {
                p.slot = remap[p.slot as usize];
                p.slot != NO_SLOT
            });
            if list.is_empty() {
                return false;
            }
            list.shrink_to_fit();
            *id = postings.len() as u32;
            postings.push(list);
            true
        });
        self.postings = postings;
        self.slots = slots;
        remap
    }

    /// Live chunks.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Distinct terms in the dictionary (tombstones' terms included until
    /// a compaction).
    pub fn vocabulary(&self) -> usize {
        self.terms.len()
    }

    /// Bytes held by the dictionary, posting lists and slot table (an
    /// estimate: allocator overhead left out).
    pub fn heap_bytes(&self) -> usize {
        let dictionary: usize = self.terms.keys().map(|t| t.len() + 16 + 4 + 8).sum();
        let postings: usize = self
            .postings
            .iter()
            .map(|l| 24 + l.capacity() * std::mem::size_of::<Posting>())
            .sum();
        dictionary + postings + self.slots.capacity() * std::mem::size_of::<Slot>()
    }

    /// The `k` live chunks with the highest BM25 score for `query` among
    /// those `accept` lets through (every live chunk when `None`), best
    /// first (ties: lower chunk id first), as `(chunk, score)`. Only chunks
    /// sharing at least one term with the query score: fewer than `k` come
    /// back when fewer match. Exhaustive over the query terms' postings,
    /// so a filter never shortens the list.
    ///
    /// BM25 as Lucene computes it: idf = ln(1 + (N - df + 0.5) / (df + 0.5)),
    /// each query term counted once; N, df and the average length count
    /// live chunks only, over the whole collection (filter or not).
    pub fn search(
        &self,
        query: &str,
        k: usize,
        accept: Option<&dyn Fn(ChunkId) -> bool>,
    ) -> Vec<(ChunkId, f32)> {
        let mut ids = Vec::new();
        for_each_term(query, |term| ids.extend(self.terms.get(term).copied()));
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() || self.live == 0 || k == 0 {
            return Vec::new();
        }
        let n = self.live as f32;
        let avg_len = (self.live_terms as f32 / n).max(1.0);
        let mut scores = vec![0f32; self.slots.len()];
        let mut touched = Vec::new();
        for id in ids {
            let list = &self.postings[id as usize];
            let live = |p: &&Posting| self.slots[p.slot as usize].chunk.is_some();
            let df = list.iter().filter(live).count() as f32;
            if df == 0.0 {
                continue;
            }
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for p in list.iter().filter(live) {
                let len = self.slots[p.slot as usize].len as f32;
                let tf = p.tf as f32;
                let score = &mut scores[p.slot as usize];
                if *score == 0.0 {
                    touched.push(p.slot);
                }
                *score += idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg_len));
            }
        }
        let mut hits: Vec<(ChunkId, f32)> = touched
            .into_iter()
            .filter_map(|slot| Some((self.slots[slot as usize].chunk?, scores[slot as usize])))
            .filter(|(chunk, _)| accept.is_none_or(|f| f(*chunk)))
            .collect();
        let best_first = |a: &(ChunkId, f32), b: &(ChunkId, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if hits.len() > k {
            hits.select_nth_unstable_by(k - 1, best_first);
            hits.truncate(k);
        }
        hits.sort_unstable_by(best_first);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(texts: &[&str]) -> LexicalIndex {
        let mut ix = LexicalIndex::default();
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(ix.insert(i as ChunkId, t), i as u32);
        }
        ix
    }

    fn ids(hits: &[(ChunkId, f32)]) -> Vec<ChunkId> {
        hits.iter().map(|h| h.0).collect()
    }

    #[test]
    fn scores_match_bm25_by_hand() {
        let ix = index(&["apple banana", "apple apple cherry", "durian"]);
        // N 3, lengths 2 3 1 (avg 2); "apple": df 2, idf ln(1 + 1.5/2.5).
        let idf = (1.0f32 + 1.5 / 2.5).ln();
        let bm25 = |tf: f32, len: f32| idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / 2.0));
        let hits = ix.search("Apples?", 10, None);
        assert_eq!(ids(&hits), [1, 0]);
        assert!((hits[0].1 - bm25(2.0, 3.0)).abs() < 1e-6, "{hits:?}");
        assert!((hits[1].1 - bm25(1.0, 2.0)).abs() < 1e-6, "{hits:?}");
        // Repeating a query term changes nothing; unknown terms add nothing.
        assert_eq!(ix.search("apple apple zebra", 10, None), hits);
        assert!(ix.search("zebra", 10, None).is_empty());
        assert!(ix.search("the of and", 10, None).is_empty());
        assert_eq!(ids(&ix.search("apple", 1, None)), [1]);
        assert_eq!(ids(&ix.search("apple durian", 10, Some(&|c| c != 1))), [2, 0]);
    }

    #[test]
    fn removal_and_compaction_keep_the_statistics_of_the_live_chunks() {
        let texts = ["red fox", "red red wolf", "blue whale", "red panda bear"];
        let mut ix = index(&texts);
        ix.remove(1);
        ix.remove(1);
        assert_eq!((ix.len(), ix.tombstones()), (3, 1));
        // Exactly as if chunk 1 had never been indexed.
        let fresh = {
            let mut f = LexicalIndex::default();
            for i in [0, 2, 3] {
                f.insert(i, texts[i as usize]);
            }
            f
        };
        let q = "red wolf panda";
        assert_eq!(ix.search(q, 10, None), fresh.search(q, 10, None));
        let vocabulary = ix.vocabulary();
        let remap = ix.compact();
        assert_eq!(remap, [0, NO_SLOT, 1, 2]);
        assert_eq!(
            (ix.tombstones(), ix.vocabulary()),
            (0, vocabulary - 1),
            "`wolf` forgotten"
        );
        assert_eq!(ix.search(q, 10, None), fresh.search(q, 10, None));
        // Inserting after a compaction appends.
        assert_eq!(ix.insert(9, "wolf"), 3);
        assert_eq!(ids(&ix.search("wolf", 10, None)), [9]);
    }

    #[test]
    fn stemming_and_stopwords_apply_to_queries_and_chunks_alike() {
        let ix = index(&["The connection was connected.", "Nothing here."]);
        assert_eq!(ids(&ix.search("connecting", 5, None)), [0]);
        assert_eq!(terms("connecting"), ["connect"]);
    }
}
