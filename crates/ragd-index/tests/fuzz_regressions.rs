//! Inputs that once made a fuzz target fail (`fuzz/regressions/<target>/`),
//! replayed through the target's own harness (`fuzz/src/`) so that a fixed
//! crash stays fixed. See `fuzz/README.md`.

use std::path::Path;

#[allow(dead_code)]
#[path = "../../../fuzz/src/chunking.rs"]
mod chunking;
#[allow(dead_code)]
#[path = "../../../fuzz/src/store.rs"]
mod store;

/// Runs every committed input of `target` through `run`.
fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut inputs: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    inputs.sort();
    for input in inputs {
        eprintln!("replaying {}", input.display());
        run(&std::fs::read(&input).expect("read a regression input"));
    }
}

#[test]
fn wal_replay() {
    replay("wal_replay", store::wal_replay);
}

#[test]
fn snapshot() {
    replay("snapshot", store::snapshot);
}

#[test]
fn chunking() {
    replay("chunking", chunking::run);
}
