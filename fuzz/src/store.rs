//! `wal_replay` and `snapshot`: a collection's files as `Store::open`
//! recovers them, then the recovered collection in use.
//!
//! A real collection is made once per process with `ragd_index::Store`
//! (documents upserted, one deleted, a checkpoint, one more upsert) and its
//! files kept as the base. Each input becomes the `wal.log` or the
//! `snapshot.bin` of a fresh copy of that collection, and the store is
//! opened. Opening must give `Ok` or `Err` (or quarantine the collection),
//! never a panic (the store would catch it and quarantine the collection,
//! but a decoder that panics has a bug) or a hang; a collection that
//! opened must then answer searches and document lookups, take a delete,
//! checkpoint, and open again with the same content.
//!
//! Input layout, both targets: a flags byte, then the bytes.
//! - `wal_replay`: bit 0 appends the bytes to the base log (else they are
//!   the whole log); bit 1 rewrites the checksum of every frame of the
//!   bytes (so that mutated records reach the record decoder); bit 2 puts
//!   the base snapshot in place (the base log is then the one written after
//!   it).
//! - `snapshot`: bit 0 wraps the bytes as magic | bytes | checksum (else
//!   they are the whole file); bit 1 keeps a base log next to it: the one
//!   of before the snapshot (records it already holds), or with bit 2 the
//!   one of after it.
//!
//! Self-contained (ragd-index's dependencies and dev-dependencies only):
//! also included by `crates/ragd-index/tests/fuzz_regressions.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use ragd_index::testing::{HashEmbedder, WhitespaceTokenizer};
use ragd_index::{
    CollectionConfig, DocumentInput, HnswParams, IndexError, Metadata, MetadataFilter, Store, StoreOptions,
};

const TENANT: &str = "t";
const COLLECTION: &str = "c";
const DIM: usize = 4;
const CONFIG_FILE: &str = "collection.json";
const WAL_FILE: &str = "wal.log";
const SNAPSHOT_FILE: &str = "snapshot.bin";
const SNAPSHOT_MAGIC: &[u8; 8] = b"RAGDSNP1";

/// The files of the base collection.
pub struct Base {
    pub config: Vec<u8>,
    /// The log before the checkpoint (records 1..=3).
    pub wal: Vec<u8>,
    /// The snapshot (of record 3).
    pub snapshot: Vec<u8>,
    /// The log after the checkpoint (record 4).
    pub wal_after_snapshot: Vec<u8>,
}

fn options() -> StoreOptions {
    StoreOptions {
        // Never checkpoint or compact on its own: the harness decides.
        checkpoint_wal_bytes: u64::MAX,
        compact_tombstone_ratio: 0.3,
        compact_min_points: usize::MAX,
        ..StoreOptions::default()
    }
}

/// A folder of this thread for `what`: in /dev/shm when there is one
/// (fsyncs cost nothing there), else in the temporary folder. Named
/// `ragd-fuzz-<what><thread>-<process id>`.
fn scratch(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static THREAD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    let shm = Path::new("/dev/shm");
    let root = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let thread = THREAD.with(|t| *t);
    root.join(format!("ragd-fuzz-{what}{thread}-{}", std::process::id()))
}

fn collection_dir(root: &Path) -> PathBuf {
    root.join("tenants").join(TENANT).join(COLLECTION)
}

fn doc(id: &str, text: &str, metadata: serde_json::Value) -> DocumentInput {
    let metadata: Metadata = match metadata {
        serde_json::Value::Object(m) => m,
        _ => Metadata::new(),
    };
    DocumentInput {
        id: id.into(),
        text: text.into(),
        metadata,
    }
}

pub fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let root = scratch("base");
        let _ = std::fs::remove_dir_all(&root);
        let store = Store::open(&root, options()).expect("open the base store");
        let mut config = CollectionConfig::new(DIM, 8, 2);
        config.hnsw = HnswParams {
            m: 4,
            ef_construction: 16,
            ef_search: 16,
        };
        let c = store
            .create_collection(TENANT, COLLECTION, config)
            .expect("create the base collection");
        let embedder = HashEmbedder::new(DIM);
        let upsert = |docs: Vec<DocumentInput>| {
            c.upsert_with(docs, &WhitespaceTokenizer, |t: &[String]| embedder.embed(t))
                .expect("upsert into the base collection")
        };
        upsert(vec![
            doc(
                "a",
                "The first document. It has two sentences, and more words than one chunk holds.",
                serde_json::json!({"lang": "en"}),
            ),
            doc(
                "b",
                "Second document\nwith lines",
                serde_json::json!({"n": [1, {"x": null}]}),
            ),
        ]);
        c.delete(&["a"]).expect("delete from the base collection");
        upsert(vec![doc("c", "third one", serde_json::json!({"lang": "fr"}))]);
        let dir = collection_dir(&root);
        let read = |name: &str| std::fs::read(dir.join(name)).expect("read a base file");
        let wal = read(WAL_FILE);
        c.checkpoint().expect("checkpoint the base collection");
        let snapshot = read(SNAPSHOT_FILE);
        upsert(vec![doc("a", "back again. Now shorter.", serde_json::json!({}))]);
        let base = Base {
            config: read(CONFIG_FILE),
            wal,
            snapshot,
            wal_after_snapshot: read(WAL_FILE),
        };
        drop(c);
        drop(store);
        let _ = std::fs::remove_dir_all(&root);
        base
    })
}

/// Rewrites the checksum of each complete frame (`len | crc | payload`)
/// from the start of `log`, up to the first that is not one.
fn fix_frame_checksums(log: &mut [u8]) {
    let mut pos = 0;
    while pos + 8 <= log.len() {
        let len_bytes = [log[pos], log[pos + 1], log[pos + 2], log[pos + 3]];
        let len = u32::from_le_bytes(len_bytes) as usize;
        let Some(end) = (pos + 8).checked_add(len).filter(|&e| e <= log.len()) else {
            break;
        };
        let mut h = crc32fast::Hasher::new();
        h.update(&len_bytes);
        h.update(&log[pos + 8..end]);
        log[pos + 4..pos + 8].copy_from_slice(&h.finalize().to_le_bytes());
        pos = end;
    }
}

/// `wal_replay`: see the module documentation for the layout.
pub fn wal_replay(data: &[u8]) {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    let base = base();
    let with_snapshot = flags & 4 != 0;
    let mut fuzzed = bytes.to_vec();
    if flags & 2 != 0 {
        fix_frame_checksums(&mut fuzzed);
    }
    let wal = if flags & 1 != 0 {
        let mut wal = if with_snapshot {
            base.wal_after_snapshot.clone()
        } else {
            base.wal.clone()
        };
        wal.extend_from_slice(&fuzzed);
        wal
    } else {
        fuzzed
    };
    recover(&wal, with_snapshot.then_some(base.snapshot.as_slice()));
}

/// `snapshot`: see the module documentation for the layout.
pub fn snapshot(data: &[u8]) {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    let base = base();
    let snapshot = if flags & 1 != 0 {
        let mut s = SNAPSHOT_MAGIC.to_vec();
        s.extend_from_slice(bytes);
        let crc = crc32fast::hash(&s);
        s.extend_from_slice(&crc.to_le_bytes());
        s
    } else {
        bytes.to_vec()
    };
    let wal: &[u8] = match (flags & 2 != 0, flags & 4 != 0) {
        (false, _) => &[],
        (true, false) => &base.wal,
        (true, true) => &base.wal_after_snapshot,
    };
    recover(wal, Some(&snapshot));
}

/// The body of the base snapshot: what `snapshot` wraps when bit 0 is set.
pub fn base_snapshot_body() -> &'static [u8] {
    let s = &base().snapshot;
    &s[SNAPSHOT_MAGIC.len()..s.len() - 4]
}

/// Opens a copy of the base collection whose log is `wal` (and snapshot
/// `snapshot`), and uses what opened.
fn recover(wal: &[u8], snapshot: Option<&[u8]>) {
    let root = scratch("store");
    let _ = std::fs::remove_dir_all(&root);
    let dir = collection_dir(&root);
    std::fs::create_dir_all(&dir).expect("create the collection folder");
    std::fs::write(dir.join(CONFIG_FILE), &base().config).expect("write collection.json");
    std::fs::write(dir.join(WAL_FILE), wal).expect("write wal.log");
    if let Some(s) = snapshot {
        std::fs::write(dir.join(SNAPSHOT_FILE), s).expect("write snapshot.bin");
    }
    if let Ok(store) = Store::open(&root, options()) {
        // The store catches a panic of `Collection::open` and quarantines
        // the collection; under libFuzzer the panic aborts first, in a test
        // (regression replay) this finds it.
        for q in store.quarantined() {
            assert!(
                !q.error.contains("panicked"),
                "opening the collection panicked: {}",
                q.error
            );
        }
        exercise(&root, store);
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// What a recovered collection must do: answer, change, checkpoint, and
/// open again with the same content.
fn exercise(root: &Path, store: Store) {
    // A collection that fails to open is quarantined (an error, not a panic).
    let c = match store.collection(TENANT, COLLECTION) {
        Ok(c) => c,
        Err(IndexError::Quarantined(_)) => return,
        Err(e) => panic!("the collection is neither open nor quarantined: {e}"),
    };
    let stats = c.stats().expect("stats");
    let query = [1.0, 0.5, -0.25, 0.0];
    let hits = c.search(&query, 8, None).expect("search");
    assert!(hits.len() <= stats.chunks, "more hits than chunks");
    for h in &hits {
        let found = c.document(&h.doc_id).expect("document");
        let doc = found.expect("a hit's document exists");
        assert_eq!(
            doc.chunks.get(h.chunk_index),
            Some(&h.text),
            "a hit's text is not its document's chunk"
        );
    }
    let filter = MetadataFilter::eq("lang", "en");
    c.search(&query, 4, Some(&filter)).expect("filtered search");
    if let Some(first) = hits.first() {
        let ids = MetadataFilter::doc_ids([first.doc_id.clone()]);
        c.search(&query, 4, Some(&ids)).expect("search by document id");
        assert_eq!(
            c.delete(&[&first.doc_id]).expect("delete"),
            1,
            "a hit's document was not deleted"
        );
    }
    c.compact().expect("compact");
    c.checkpoint().expect("a recovered collection checkpoints");
    let after = c.stats().expect("stats");
    drop(c);
    drop(store);

    let store = Store::open(root, options()).expect("a checkpointed store opens");
    let c = store
        .collection(TENANT, COLLECTION)
        .unwrap_or_else(|e| panic!("the collection is still there: {e}; {:?}", store.quarantined()));
    let again = c.stats().expect("stats");
    assert_eq!(
        (again.documents, again.chunks),
        (after.documents, after.chunks),
        "the checkpoint did not keep the content"
    );
    c.search(&query, 8, None).expect("search");
}
