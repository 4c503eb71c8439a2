//! The harnesses of ragd's fuzz targets, one module per target (see
//! `fuzz_targets/`), and the seeds of their corpora.
//!
//! Each module is self-contained (besides `panics.rs`, included beside it)
//! so that the crate the parser lives in can include it with `#[path]` in
//! a plain test that replays committed crash inputs
//! (`tests/fuzz_regressions.rs` of ragd-index, ragd-models and
//! ragd-server).

pub mod chunking;
pub mod gguf_metadata;
mod panics;
pub mod request_json;
pub mod store;
pub mod tiktoken_pickle;

mod seeds;

/// Called from each target's `init`: with `RAGD_FUZZ_WRITE_SEEDS=<dir>`,
/// writes the target's seed corpus into `<dir>` and exits.
pub fn init(target: &str) {
    let Some(dir) = std::env::var_os("RAGD_FUZZ_WRITE_SEEDS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("create the seed folder");
    let seeds = seeds::of(target);
    for (name, bytes) in &seeds {
        std::fs::write(dir.join(name), bytes).expect("write a seed");
    }
    eprintln!("{target}: wrote {} seeds to {}", seeds.len(), dir.display());
    std::process::exit(0);
}
