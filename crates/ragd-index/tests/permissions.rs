//! Everything the store writes is owner-only (issue 10: data files were
//! 0644 and folders 0755, so any local user could read every tenant's
//! documents).
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use serde_json::json;

/// Every path under `dir` (itself included) with its mode bits.
fn modes(dir: &Path, out: &mut Vec<(String, bool, u32)>) {
    let meta = std::fs::symlink_metadata(dir).unwrap();
    out.push((dir.display().to_string(), true, meta.permissions().mode() & 0o777));
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            modes(&entry.path(), out);
        } else {
            out.push((
                entry.path().display().to_string(),
                false,
                meta.permissions().mode() & 0o777,
            ));
        }
    }
}

#[test]
fn every_file_is_0600_and_every_folder_0700() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let store = open(&root);
    let c = store.create_collection("tenant-a", "docs", config()).unwrap();
    upsert(&c, vec![doc("d1", "private words of tenant a", json!({"k": 1}))]);
    c.checkpoint().unwrap();
    upsert(&c, vec![doc("d2", "more private words", json!({}))]);
    store.create_collection("tenant-b", "gone", config()).unwrap();
    store.delete_collection("tenant-b", "gone").unwrap();
    store.create_collection("tenant-b", "kept", config()).unwrap();
    drop(c);
    drop(store);
    let store = open(&root);
    drop(store);

    let mut found = Vec::new();
    modes(&root, &mut found);
    let names: Vec<&str> = found.iter().map(|(p, _, _)| p.as_str()).collect();
    for expected in ["LOCK", "wal.log", "snapshot.bin", "collection.json", "tenant-b"] {
        assert!(
            names.iter().any(|n| n.ends_with(expected)),
            "no {expected} in {names:?}"
        );
    }
    for (path, is_dir, mode) in found {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{path} is {mode:o}");
    }
}

#[test]
fn an_older_world_readable_store_is_closed_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    drop(open(&root));
    let tenants = root.join("tenants");
    std::fs::set_permissions(&tenants, std::fs::Permissions::from_mode(0o755)).unwrap();
    drop(open(&root));
    let mode = std::fs::metadata(&tenants).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}
