//! Inputs that once made a fuzz target fail (`fuzz/regressions/<target>/`),
//! replayed through the target's own harness (`fuzz/src/`) so that a fixed
//! crash stays fixed. See `fuzz/README.md`.

#[path = "../../../fuzz/src/replay.rs"]
mod replay;
use replay::replay;

#[allow(dead_code)]
#[path = "../../../fuzz/src/chunking.rs"]
mod chunking;
#[allow(dead_code)]
#[path = "../../../fuzz/src/store.rs"]
mod store;

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
