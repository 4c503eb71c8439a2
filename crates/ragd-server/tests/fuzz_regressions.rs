//! Inputs that once made a fuzz target fail (`fuzz/regressions/<target>/`),
//! replayed through the target's own harness (`fuzz/src/`) so that a fixed
//! crash stays fixed. See `fuzz/README.md`.

#[path = "../../../fuzz/src/replay.rs"]
mod replay;
use replay::replay;

#[allow(dead_code)]
#[path = "../../../fuzz/src/request_json.rs"]
mod request_json;

#[test]
fn request_json() {
    replay("request_json", request_json::run);
}
