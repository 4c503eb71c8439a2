//! Inputs that once made a fuzz target fail (`fuzz/regressions/<target>/`),
//! replayed through the target's own harness (`fuzz/src/`) so that a fixed
//! crash stays fixed. See `fuzz/README.md`.

#[path = "../../../fuzz/src/replay.rs"]
mod replay;
use replay::replay;

#[path = "../../../fuzz/src/panics.rs"]
mod panics;

#[allow(dead_code)]
#[path = "../../../fuzz/src/gguf_metadata.rs"]
mod gguf_metadata;
#[allow(dead_code)]
#[path = "../../../fuzz/src/tiktoken_pickle.rs"]
mod tiktoken_pickle;

#[test]
fn gguf_metadata() {
    replay("gguf_metadata", gguf_metadata::run);
}

#[test]
fn tiktoken_pickle() {
    replay("tiktoken_pickle", tiktoken_pickle::run);
}
