//! One tenant's collection: its state behind a read-write lock, its
//! write-ahead log, its snapshot, and the write path that ties them:
//! validate, log and fsync, then apply (so a write that returned `Ok`
//! survives a crash, and one that failed changed nothing).
//!
//! Files in the collection's folder: `collection.json` (its config, written
//! once at creation), `wal.log`, `snapshot.bin` (after the first checkpoint).

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ragd_core::TextTokenizer;

use crate::config::{CollectionConfig, StoreOptions};
use crate::document::{
    attach_vectors, check_ids, check_vector, chunk_texts, prepare_documents, CollectionStats, DocumentInfo,
    DocumentInput, DocumentSummary, EmbeddedDocument, Hit, PreparedDocument, UpsertOutcome,
};
use crate::filter::MetadataFilter;
use crate::fsutil::{sync_dir, write_atomic};
use crate::hybrid::Query;
use crate::record::{ChunkRecord, DocRecord, WalEntry, WalOp};
use crate::state::{State, MAX_COUNTER};
use crate::wal::Wal;
use crate::{snapshot, Cancel, IndexError, Result};

pub(crate) const CONFIG_FILE: &str = "collection.json";
const WAL_FILE: &str = "wal.log";
const SNAPSHOT_FILE: &str = "snapshot.bin";

/// A named set of documents of one tenant, searchable by vector.
///
/// Obtained from [`crate::Store`]; all methods take `&self` and are safe to
/// call from many threads (searches run in parallel, writes one at a time).
/// Every method blocks on disk or CPU: call them from a blocking context.
pub struct Collection {
    name: String,
    dir: PathBuf,
    config: CollectionConfig,
    options: StoreOptions,
    inner: RwLock<Inner>,
    /// Lock order: `inner` first, then `log`.
    log: Mutex<Log>,
    /// Random, drawn each time the collection is loaded (see [`Self::version`]).
    incarnation: u64,
    /// The sequence number of the last applied write, readable without a lock.
    applied_seq: AtomicU64,
}

/// What a collection's content is at one moment: see
/// [`Collection::version`]. Equal versions mean the same content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct CollectionVersion {
    /// Random, drawn each time the collection is loaded: a collection
    /// deleted and created again under the same name, or reloaded, never
    /// repeats an earlier one's versions (but for 2^-64 odds).
    pub incarnation: u64,
    /// The sequence number of the last write applied: grows with every
    /// upsert and delete that changed something.
    pub seq: u64,
}

impl std::fmt::Display for CollectionVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}-{}", self.incarnation, self.seq)
    }
}

/// A fresh random `u64` (std's per-process random hash keys, a clock and a
/// counter: no `rand` needed for an identifier).
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.finish()
}

struct Inner {
    state: State,
    /// Set when the collection is deleted; later calls get `NotFound`.
    dropped: bool,
}

struct Log {
    wal: Wal,
    checkpoint_error: Option<String>,
    torn_bytes_dropped: u64,
}

impl Collection {
    /// Creates the files of a new collection in `dir` (which must exist and
    /// be empty); the caller makes `dir` visible atomically afterwards.
    pub(crate) fn create_files(dir: &Path, config: &CollectionConfig) -> Result<()> {
        let json = serde_json::to_vec_pretty(config).map_err(|e| IndexError::InvalidInput(e.to_string()))?;
        write_atomic(&dir.join(CONFIG_FILE), |out| out.write_all(&json))?;
        Wal::open(&dir.join(WAL_FILE), 0)?;
        sync_dir(dir)
    }

    /// Loads the collection in `dir`: its snapshot, then its log replayed.
    pub(crate) fn open(dir: &Path, name: &str, options: &StoreOptions) -> Result<Self> {
        let config_path = dir.join(CONFIG_FILE);
        let bytes = std::fs::read(&config_path).map_err(|e| IndexError::io(&config_path, e))?;
        let config: CollectionConfig =
            serde_json::from_slice(&bytes).map_err(|e| IndexError::corrupt(&config_path, e))?;
        config
            .validate()
            .map_err(|e| IndexError::corrupt(&config_path, e))?;

        let mut state = match snapshot::read(&dir.join(SNAPSHOT_FILE))? {
            Some(snap) => State::from_snapshot(&config.hnsw, snap)
                .map_err(|e| IndexError::corrupt(dir.join(SNAPSHOT_FILE), e))?,
            None => State::empty(&config.hnsw),
        };
        // Counters near the top of u64 come only from a damaged or forged
        // snapshot; they would overflow on the next write.
        if state.seq > MAX_COUNTER || state.next_chunk_id > MAX_COUNTER {
            return Err(IndexError::corrupt(
                dir.join(SNAPSHOT_FILE),
                "sequence number or chunk id out of range",
            ));
        }
        let recovered = Wal::open(&dir.join(WAL_FILE), state.seq)?;
        let torn_bytes_dropped = recovered.dropped_bytes;
        let wal_path = recovered.wal.path().to_path_buf();
        for payload in recovered.payloads {
            let entry = WalEntry::decode(&payload).map_err(|e| IndexError::corrupt(&wal_path, e))?;
            if entry.seq > state.seq.saturating_add(1) {
                return Err(IndexError::corrupt(
                    &wal_path,
                    format!(
                        "record {} follows record {}: records are missing",
                        entry.seq, state.seq
                    ),
                ));
            }
            // Records already in the snapshot (seq <= state.seq) are skipped.
            state
                .apply(entry)
                .map_err(|e| IndexError::corrupt(&wal_path, e))?;
        }
        let applied_seq = AtomicU64::new(state.seq);
        Ok(Self {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            config,
            options: options.clone(),
            incarnation: random_u64(),
            applied_seq,
            inner: RwLock::new(Inner {
                state,
                dropped: false,
            }),
            log: Mutex::new(Log {
                wal: recovered.wal,
                checkpoint_error: None,
                torn_bytes_dropped,
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &CollectionConfig {
        &self.config
    }

    /// The version of the collection's content: changes with every upsert
    /// and every delete that removes something, and differs between this
    /// collection and any other loaded under the same name (after a delete
    /// and create, or a restart). Lock-free. For caches of answers derived
    /// from the collection: read it *before* reading the collection, so the
    /// data read is at least as new as the version it is cached under (a
    /// write in between only makes later lookups miss).
    pub fn version(&self) -> CollectionVersion {
        CollectionVersion {
            incarnation: self.incarnation,
            seq: self.applied_seq.load(Ordering::Acquire),
        }
    }

    /// Chunks documents for embedding (no lock taken, nothing written).
    /// Rejects empty texts and invalid ids.
    pub fn prepare(
        &self,
        docs: Vec<DocumentInput>,
        tokenizer: &dyn TextTokenizer,
    ) -> Result<Vec<PreparedDocument>> {
        self.prepare_cancellable(docs, tokenizer, &Cancel::new())
    }

    /// [`Self::prepare`] that gives up with [`IndexError::Cancelled`] once
    /// `cancel` is set (checked per document and inside chunking).
    pub fn prepare_cancellable(
        &self,
        docs: Vec<DocumentInput>,
        tokenizer: &dyn TextTokenizer,
        cancel: &Cancel,
    ) -> Result<Vec<PreparedDocument>> {
        prepare_documents(&self.config, docs, tokenizer, cancel)
    }

    /// Inserts or replaces documents, all of them or none. Durable (logged
    /// and fsynced) when it returns `Ok`.
    pub fn upsert(&self, docs: Vec<EmbeddedDocument>) -> Result<UpsertOutcome> {
        self.upsert_cancellable(docs, &Cancel::new())
    }

    /// [`Self::upsert`] that gives up with [`IndexError::Cancelled`], having
    /// written nothing, if `cancel` is set before the write is logged
    /// (checked while validating and once the write lock is held, which a
    /// write may wait for). Once logged, the write completes.
    pub fn upsert_cancellable(&self, docs: Vec<EmbeddedDocument>, cancel: &Cancel) -> Result<UpsertOutcome> {
        check_ids(docs.iter().map(|d| d.id.as_str()))?;
        for doc in &docs {
            cancel.check()?;
            for chunk in &doc.chunks {
                self.check_vector(&chunk.vector)?;
            }
        }
        if docs.is_empty() {
            return Ok(UpsertOutcome::default());
        }
        let mut inner = self.write()?;
        cancel.check()?;
        let state = &inner.state;
        let added = docs.iter().filter(|d| !state.contains(&d.id)).count();
        let limit = self.options.max_documents_per_collection;
        if state.documents() + added > limit {
            return Err(IndexError::LimitExceeded {
                what: "documents per collection",
                limit,
            });
        }
        let mut outcome = UpsertOutcome {
            documents: docs.len(),
            ..UpsertOutcome::default()
        };
        let mut next_chunk_id = state.next_chunk_id;
        let records = docs
            .into_iter()
            .map(|d| {
                outcome.chunks += d.chunks.len();
                outcome.replaced += usize::from(state.contains(&d.id));
                DocRecord {
                    id: d.id,
                    metadata: d.metadata,
                    chunks: d
                        .chunks
                        .into_iter()
                        .map(|c| {
                            next_chunk_id += 1;
                            ChunkRecord {
                                id: next_chunk_id - 1,
                                text: c.text,
                                vector: c.vector,
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        self.commit(&mut inner, WalOp::Upsert(records))?;
        drop(inner);
        self.checkpoint_if_due();
        Ok(outcome)
    }

    /// [`Self::prepare`], one call of `embed` with every chunk text, then
    /// [`Self::upsert`]: for callers that embed synchronously (tests, CLI).
    pub fn upsert_with<E: std::fmt::Display>(
        &self,
        docs: Vec<DocumentInput>,
        tokenizer: &dyn TextTokenizer,
        mut embed: impl FnMut(&[String]) -> std::result::Result<Vec<Vec<f32>>, E>,
    ) -> Result<UpsertOutcome> {
        let prepared = self.prepare(docs, tokenizer)?;
        let vectors = embed(&chunk_texts(&prepared)).map_err(|e| IndexError::Embedding(e.to_string()))?;
        self.upsert(attach_vectors(prepared, vectors)?)
    }

    /// Deletes documents by id; returns how many existed. Durable when it
    /// returns `Ok`.
    pub fn delete(&self, doc_ids: &[impl AsRef<str>]) -> Result<usize> {
        let mut inner = self.write()?;
        let mut seen = HashSet::new();
        let present: Vec<String> = doc_ids
            .iter()
            .map(AsRef::as_ref)
            .filter(|id| inner.state.contains(id) && seen.insert(*id))
            .map(str::to_string)
            .collect();
        if present.is_empty() {
            return Ok(0);
        }
        let n = present.len();
        self.commit(&mut inner, WalOp::Delete(present))?;
        drop(inner);
        self.checkpoint_if_due();
        Ok(n)
    }

    /// The `top_k` chunks most similar to `query` (cosine), best first,
    /// among the documents `filter` lets through. Fewer only when fewer
    /// chunks match.
    pub fn search(&self, query: &[f32], top_k: usize, filter: Option<&MetadataFilter>) -> Result<Vec<Hit>> {
        self.check_vector(query)?;
        let inner = self.read()?;
        Ok(inner
            .state
            .search(query, top_k, self.config.hnsw.ef_search, filter))
    }

    /// The `top_k` best chunks for `q` (dense, lexical or hybrid: see
    /// [`crate::SearchMode`]), best first, among the documents its filter lets
    /// through. `dense` and `hybrid` need the query's vector; `lexical`
    /// finds only chunks sharing a term with the query's text.
    pub fn query(&self, q: &Query<'_>) -> Result<Vec<Hit>> {
        match q.vector {
            Some(v) => self.check_vector(v)?,
            None if q.mode.needs_vector() => {
                return Err(IndexError::InvalidInput(format!(
                    "a {} search needs the query's vector",
                    q.mode.as_str()
                )))
            }
            None => {}
        }
        q.fusion.validate()?;
        let inner = self.read()?;
        Ok(inner.state.query(q, self.config.hnsw.ef_search))
    }

    /// A stored document; `None` if absent.
    pub fn document(&self, id: &str) -> Result<Option<DocumentInfo>> {
        Ok(self.read()?.state.document(id))
    }

    /// Up to `limit` documents after the id `after`, in id order (see
    /// the state's listing: time linear in the collection's size).
    pub fn list_documents(&self, after: Option<&str>, limit: usize) -> Result<Vec<DocumentSummary>> {
        Ok(self.read()?.state.list_documents(after, limit))
    }

    /// Rebuilds the HNSW graph and compacts the lexical index, without
    /// tombstones. Searches wait meanwhile.
    pub fn compact(&self) -> Result<()> {
        self.write()?.state.compact();
        Ok(())
    }

    /// Writes a snapshot of the collection and empties its log, so the next
    /// start loads the snapshot instead of replaying the log. Searches go on
    /// meanwhile; writes wait.
    pub fn checkpoint(&self) -> Result<()> {
        let inner = self.read()?;
        let mut log = self.log.lock().map_err(|_| self.unavailable())?;
        self.checkpoint_locked(&inner, &mut log)
    }

    pub fn stats(&self) -> Result<CollectionStats> {
        let inner = self.read()?;
        let log = self.log.lock().map_err(|_| self.unavailable())?;
        Ok(CollectionStats {
            documents: inner.state.documents(),
            chunks: inner.state.chunks(),
            tombstones: inner.state.tombstones(),
            wal_bytes: log.wal.len(),
            checkpoint_error: log.checkpoint_error.clone(),
            torn_bytes_dropped: log.torn_bytes_dropped,
        })
    }

    /// Deletes the collection: waits for operations in progress, runs
    /// `remove_files` (which moves its folder away), then marks it deleted so
    /// later calls on handles still held get `NotFound`. Holding the write
    /// lock throughout means no checkpoint of this collection can still be
    /// writing into its old path when a new collection takes that name.
    /// (A collection left unavailable by a panic can still be deleted.)
    pub(crate) fn retire(&self, remove_files: impl FnOnce() -> Result<()>) -> Result<()> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if inner.dropped {
            return Err(IndexError::NotFound(self.name.clone()));
        }
        remove_files()?;
        inner.dropped = true;
        Ok(())
    }

    /// Logs `op` (fsynced), then applies it; compacts when due.
    fn commit(&self, inner: &mut Inner, op: WalOp) -> Result<()> {
        let seq = inner.state.seq.checked_add(1).ok_or_else(|| {
            IndexError::corrupt(self.dir.join(WAL_FILE), "the sequence numbers are used up")
        })?;
        if let WalOp::Upsert(docs) = &op {
            // Checked before logging: a record that replay would refuse is
            // never written.
            inner
                .state
                .check_insert(docs)
                .map_err(|e| IndexError::corrupt(self.dir.join(WAL_FILE), e))?;
        }
        let entry = WalEntry { seq, op };
        {
            let mut log = self.log.lock().map_err(|_| self.unavailable())?;
            log.wal.append(&entry.encode())?;
        }
        // Live writes are built valid (fresh chunk ids, one record per id).
        inner
            .state
            .apply(entry)
            .map_err(|e| IndexError::corrupt(self.dir.join(WAL_FILE), e))?;
        self.applied_seq.store(inner.state.seq, Ordering::Release);
        let tombstones = inner.state.tombstones();
        let nodes = inner.state.graph_nodes();
        if nodes >= self.options.compact_min_points
            && tombstones as f64 > self.options.compact_tombstone_ratio * nodes as f64
        {
            inner.state.compact();
        }
        Ok(())
    }

    /// Checkpoints if the log outgrew its limit. A failure is recorded in
    /// the stats, not returned: the write that triggered it is already safe.
    fn checkpoint_if_due(&self) {
        let Ok(inner) = self.read() else { return };
        let Ok(mut log) = self.log.lock() else { return };
        if log.wal.len() > self.options.checkpoint_wal_bytes {
            let _ = self.checkpoint_locked(&inner, &mut log);
        }
    }

    fn checkpoint_locked(&self, inner: &Inner, log: &mut Log) -> Result<()> {
        let result = (|| {
            let state = &inner.state;
            snapshot::write(
                &self.dir.join(SNAPSHOT_FILE),
                state.seq,
                state.next_chunk_id,
                state.snapshot_docs().into_iter(),
            )?;
            // A crash here leaves records the snapshot already holds: replay
            // skips them by sequence number.
            log.wal.reset()
        })();
        log.checkpoint_error = result.as_ref().err().map(ToString::to_string);
        result
    }

    fn check_vector(&self, v: &[f32]) -> Result<()> {
        check_vector(self.config.dim, v)
    }

    fn unavailable(&self) -> IndexError {
        IndexError::Unavailable(self.name.clone())
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, Inner>> {
        let inner = self.inner.read().map_err(|_| self.unavailable())?;
        if inner.dropped {
            return Err(IndexError::NotFound(self.name.clone()));
        }
        Ok(inner)
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, Inner>> {
        let inner = self.inner.write().map_err(|_| self.unavailable())?;
        if inner.dropped {
            return Err(IndexError::NotFound(self.name.clone()));
        }
        Ok(inner)
    }
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{HashEmbedder, WhitespaceTokenizer};
    use crate::{CollectionConfig, DocumentInput, Store, StoreOptions};

    fn doc(id: &str, text: &str) -> DocumentInput {
        DocumentInput {
            id: id.into(),
            text: text.into(),
            metadata: crate::Metadata::new(),
        }
    }

    #[test]
    fn the_version_changes_with_every_write_and_every_incarnation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let embedder = HashEmbedder::new(8);
        let c = store
            .create_collection("t", "c", CollectionConfig::new(8, 16, 4))
            .unwrap();
        let upsert = |c: &super::Collection, id: &str| {
            c.upsert_with(vec![doc(id, "some words")], &WhitespaceTokenizer, |t| {
                embedder.embed(t)
            })
            .unwrap();
        };
        let mut seen = vec![c.version()];
        upsert(&c, "a");
        seen.push(c.version());
        upsert(&c, "a"); // a replacement is a change too
        seen.push(c.version());
        upsert(&c, "b");
        seen.push(c.version());
        assert_eq!(c.delete(&["a"]).unwrap(), 1);
        seen.push(c.version());
        // Nothing changed, nothing to invalidate.
        assert_eq!(c.delete(&["nope"]).unwrap(), 0);
        c.checkpoint().unwrap();
        c.compact().unwrap();
        assert_eq!(c.version(), *seen.last().unwrap());
        assert!(c.search(&embedder.embed_one("words"), 1, None).is_ok());
        assert_eq!(c.version(), *seen.last().unwrap());

        // Deleted and created again with the same name (and the same
        // writes): never a version the old one had.
        let old = c.clone();
        store.delete_collection("t", "c").unwrap();
        let c = store
            .create_collection("t", "c", CollectionConfig::new(8, 16, 4))
            .unwrap();
        seen.push(c.version());
        upsert(&c, "a");
        seen.push(c.version());
        upsert(&c, "a");
        seen.push(c.version());
        // After a restart too.
        drop((c, old));
        drop(store);
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        seen.push(store.collection("t", "c").unwrap().version());
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "{seen:?}");
        assert_eq!(seen[5].seq, 0);
        assert_eq!(seen.last().unwrap().seq, 2);
    }
}
