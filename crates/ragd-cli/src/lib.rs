//! ragd-cli: the `ragd` binary's command line and each command's entry
//! point (`main.rs` dispatches). A library too, so tests can parse and run
//! commands as the binary does.
//!
//! A new command: its flags in [`cli`] (`Command`), its code in a
//! `*_cmd.rs` module here (or in `ragd-bench` for a benchmark or an
//! evaluation), and its arm in `main.rs`.

pub mod cli;
pub mod config_file;
pub mod flags;
pub mod ingest_cmd;
pub mod models_cmd;
pub mod serve_config;
pub mod telemetry;
pub mod upstream_flags;
