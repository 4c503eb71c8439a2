//! Durability: everything acknowledged survives a restart, torn log tails
//! are dropped (and only they), replay is idempotent.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ragd_index::{IndexError, Metadata, Store, StoreOptions};
use serde_json::json;

fn wal_path(root: &Path) -> PathBuf {
    root.join("tenants/t/c/wal.log")
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("d{i}")).collect()
}

/// Writes documents `range` one upsert (one log record) each.
fn write_docs(store: &Store, range: std::ops::Range<usize>) {
    let c = store.collection("t", "c").unwrap();
    for i in range {
        upsert(
            &c,
            vec![doc(
                &format!("d{i}"),
                &words(&format!("x{i}y"), 20),
                json!({"i": i}),
            )],
        );
    }
}

fn content(store: &Store, n: usize) -> Vec<(String, Metadata, Vec<String>)> {
    dump(&store.collection("t", "c").unwrap(), ids(n))
}

fn fresh(dir: &Path) -> Store {
    let store = open(dir);
    store.create_collection("t", "c", config()).unwrap();
    store
}

#[test]
fn writes_survive_a_restart_without_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path());
    write_docs(&store, 0..40);
    store.collection("t", "c").unwrap().delete(&["d3"]).unwrap();
    let before = content(&store, 40);
    drop(store);

    let store = open(dir.path());
    assert_eq!(content(&store, 40), before);
    assert_eq!(before.len(), 39);
    let c = store.collection("t", "c").unwrap();
    let hits = c.search(&query(&words("x17y", 20)), 3, None).unwrap();
    assert_eq!(hits[0].doc_id, "d17");
    assert!(c.document("d3").unwrap().is_none());
}

#[test]
fn checkpoint_then_more_writes_then_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path());
    write_docs(&store, 0..30);
    let c = store.collection("t", "c").unwrap();
    c.checkpoint().unwrap();
    assert_eq!(c.stats().unwrap().wal_bytes, 0);
    write_docs(&store, 25..45); // 5 replaced, 15 new
    c.delete(&["d0", "d40"]).unwrap();
    let before = content(&store, 45);
    let stats = c.stats().unwrap();
    assert_eq!(stats.documents, 43);
    assert!(stats.wal_bytes > 0);
    drop((c, store));

    for _ in 0..2 {
        let store = open(dir.path());
        assert_eq!(content(&store, 45), before);
        let stats = store.collection("t", "c").unwrap().stats().unwrap();
        assert_eq!((stats.documents, stats.chunks), (43, 43 * 2), "no duplicates");
    }
}

#[test]
fn a_torn_last_record_is_dropped_and_only_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path());
    write_docs(&store, 0..10);
    let before_last = {
        let c = store.collection("t", "c").unwrap();
        let all = content(&store, 10);
        c.delete(&["d9"]).unwrap();
        let nine = content(&store, 10);
        // Put d9 back as the last record, then tear that record.
        write_docs(&store, 9..10);
        assert_eq!(content(&store, 10), all);
        nine
    };
    drop(store);
    let wal = wal_path(dir.path());
    let len = std::fs::metadata(&wal).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
    file.set_len(len - 3).unwrap();
    drop(file);

    let store = open(dir.path());
    assert_eq!(content(&store, 10), before_last, "everything but the torn record");
    let c = store.collection("t", "c").unwrap();
    assert!(c.stats().unwrap().torn_bytes_dropped > 0);
    // The log is usable after the cut.
    write_docs(&store, 10..12);
    drop((c, store));
    let store = open(dir.path());
    assert_eq!(store.collection("t", "c").unwrap().stats().unwrap().documents, 11);
    assert!(store
        .collection("t", "c")
        .unwrap()
        .document("d9")
        .unwrap()
        .is_none());
}

#[test]
fn garbage_after_the_last_record_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path());
    write_docs(&store, 0..10);
    let before = content(&store, 10);
    drop(store);
    let mut bytes = std::fs::read(wal_path(dir.path())).unwrap();
    let mut rng = ragd_index::testing::SplitMix64(3);
    bytes.extend((0..1000).map(|_| rng.next_u64() as u8));
    std::fs::write(wal_path(dir.path()), &bytes).unwrap();

    let store = open(dir.path());
    assert_eq!(content(&store, 10), before);
    assert_eq!(
        store
            .collection("t", "c")
            .unwrap()
            .stats()
            .unwrap()
            .torn_bytes_dropped,
        1000
    );
}

#[test]
fn damage_in_the_middle_of_the_log_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path());
    write_docs(&store, 0..10);
    drop(store);
    let mut bytes = std::fs::read(wal_path(dir.path())).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(wal_path(dir.path()), &bytes).unwrap();
    // The store opens; the collection is quarantined, its log untouched.
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(matches!(
        store.collection("t", "c"),
        Err(IndexError::Quarantined(_))
    ));
    let q = store.quarantined();
    assert_eq!((q.len(), q[0].tenant.as_str(), q[0].name.as_str()), (1, "t", "c"));
    assert!(q[0].error.contains("damaged record"), "{}", q[0].error);
    assert_eq!(std::fs::read(wal_path(dir.path())).unwrap(), bytes);
}

#[test]
fn replaying_twice_gives_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path());
    write_docs(&store, 0..20);
    write_docs(&store, 5..10);
    drop(store);
    let q = query(&words("x7y", 20));
    let mut seen = vec![];
    for _ in 0..3 {
        let store = open(dir.path());
        let c = store.collection("t", "c").unwrap();
        let hits: Vec<(String, usize)> = c
            .search(&q, 5, None)
            .unwrap()
            .into_iter()
            .map(|h| (h.doc_id, h.chunk_index))
            .collect();
        seen.push((content(&store, 20), c.stats().unwrap().chunks, hits));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[1], seen[2]);
    assert_eq!(seen[0].1, 40);
}

#[test]
fn a_crash_between_snapshot_and_log_reset_replays_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path());
    write_docs(&store, 0..15);
    let old_log = std::fs::read(wal_path(dir.path())).unwrap();
    let c = store.collection("t", "c").unwrap();
    c.checkpoint().unwrap();
    let before = content(&store, 15);
    drop((c, store));
    // As if the process died after writing the snapshot, before emptying
    // the log: the log still holds records the snapshot includes.
    std::fs::write(wal_path(dir.path()), &old_log).unwrap();
    let store = open(dir.path());
    assert_eq!(content(&store, 15), before);
    assert_eq!(store.collection("t", "c").unwrap().stats().unwrap().chunks, 30);
}

#[test]
fn automatic_checkpoint_when_the_log_grows() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        checkpoint_wal_bytes: 8 << 10,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options.clone()).unwrap();
    store.create_collection("t", "c", config()).unwrap();
    write_docs(&store, 0..60);
    let stats = store.collection("t", "c").unwrap().stats().unwrap();
    assert!(stats.wal_bytes <= 8 << 10, "log was not checkpointed: {stats:?}");
    assert!(stats.checkpoint_error.is_none());
    assert!(dir.path().join("tenants/t/c/snapshot.bin").exists());
    let before = content(&store, 60);
    drop(store);
    let store = Store::open(dir.path(), options).unwrap();
    assert_eq!(content(&store, 60), before);
}

#[test]
fn collections_are_created_and_deleted_durably() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path());
    store.create_collection("t", "other", config()).unwrap();
    store.create_collection("u", "c", config()).unwrap();
    write_docs(&store, 0..5);
    let held = store.collection("t", "c").unwrap();
    store.delete_collection("t", "c").unwrap();
    // A handle kept across the delete sees it gone.
    assert!(matches!(
        held.search(&query("x"), 1, None),
        Err(IndexError::NotFound(_))
    ));
    assert!(matches!(store.collection("t", "c"), Err(IndexError::NotFound(_))));
    drop((held, store));

    // Leftovers of an interrupted create or delete are cleaned up on open.
    std::fs::create_dir_all(dir.path().join("tenants/t/.staging-zz")).unwrap();
    std::fs::create_dir_all(dir.path().join("tenants/t/.trash-c-1")).unwrap();
    let store = open(dir.path());
    assert_eq!(store.list_collections("t").unwrap(), ["other"]);
    assert_eq!(store.list_collections("u").unwrap(), ["c"]);
    assert_eq!(store.list_tenants(), ["t", "u"]);
    assert!(!dir.path().join("tenants/t/.staging-zz").exists());
    assert!(!dir.path().join("tenants/t/.trash-c-1").exists());
    // The name can be reused, starting empty.
    let c = store.create_collection("t", "c", config()).unwrap();
    assert_eq!(c.stats().unwrap().documents, 0);
}

#[test]
fn a_data_folder_is_opened_by_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(matches!(
        Store::open(dir.path(), StoreOptions::default()),
        Err(IndexError::Locked(_))
    ));
    drop(store);
    open(dir.path());
}

#[test]
fn store_stats_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path());
    store.create_collection("u", "c", config()).unwrap();
    write_docs(&store, 0..4);
    let u = store.collection("u", "c").unwrap();
    upsert(&u, vec![doc("a", &words("z", 40), json!({}))]);
    let stats = store.stats();
    assert_eq!((stats.tenants, stats.collections, stats.documents), (2, 2, 5));
    assert_eq!(stats.chunks, 4 * 2 + u.stats().unwrap().chunks);
}
