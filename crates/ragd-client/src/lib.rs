//! ragd-client: a small client of ragd's (or any OpenAI-compatible
//! server's) HTTP API for the command-line tools (`ragd ingest`, `ragd
//! query`, `ragd bench generate`, `ragd eval rag`): which server to talk to
//! ([`ServerFlags`]), JSON calls with the server's error message
//! ([`ApiClient`]), the model to ask ([`first_model`]), streamed answers
//! ([`sse`]), and the runtime and progress bar of a command-line tool.
//!
//! Only what talks to a server lives here. A new benchmark or evaluation
//! goes in `crates/ragd-bench` (which uses this crate); a new command's
//! flags and dispatch go in the `ragd` binary's `cli.rs` and `main.rs`.

mod client;
mod progress;
mod runtime;
pub mod sse;

pub use client::{first_model, ApiClient, ServerFlags};
pub use progress::progress;
pub use runtime::runtime;
pub use sse::{parse_chunk, ChunkInfo, SseEvent, SseParser};
