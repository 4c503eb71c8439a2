//! Replays the committed inputs that once made a fuzz target fail
//! (`fuzz/regressions/<target>/`). Included by path from the
//! `tests/fuzz_regressions.rs` of the crates whose parsers the targets
//! fuzz, so a plain `cargo test` keeps fixed crashes fixed.

use std::path::Path;

/// Runs every committed input of `target` through `run`.
pub fn replay(target: &str, run: fn(&[u8])) {
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
