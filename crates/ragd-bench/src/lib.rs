//! ragd-bench: ragd's benchmarks, evaluations and trainers, the code behind
//! `ragd bench embed` ([`embed`]: in-process embedding throughput), `ragd
//! bench generate` ([`generate`]: a streaming load generator for any
//! OpenAI-compatible server), `ragd bench node` ([`node`]: what a node does
//! with a running ragd: embeddings, guard and a generation sweep, beside a
//! peer), `ragd eval rag` ([`eval`]: retrieval and
//! answer accuracy through the HTTP API), `ragd eval guard` (a guard's
//! detection figures on a labelled file) and `ragd train guard`
//! ([`train`]: a guard head trained on frozen encoder features). Each takes its clap arguments
//! and prints a table or JSON; the `ragd` binary only dispatches to them.
//! Scripts under `benches/` parse the JSON, so its fields stay as they are.
//!
//! A new benchmark goes in a module of its own here (`src/<name>.rs`, or
//! `src/<name>/` when it grows past ~300 lines) with its `...Args` and a
//! `run(args)`; a new evaluation goes in `src/eval/<name>.rs`. Its
//! subcommand goes in `BenchCommand` / `EvalCommand` of the `ragd`
//! binary's `cli.rs`, its dispatch in that binary's `main.rs`. Shared
//! statistics are in [`stats`]; how a load generator talks to the server
//! under test (connections, retries, error causes) in [`http`]; the rest of
//! talking to a server is ragd-client's job.

pub mod embed;
pub mod eval;
pub mod generate;
pub mod http;
pub mod node;
pub mod stats;
pub mod train;

pub use embed::EmbedBenchArgs;
pub use eval::guard::GuardEvalArgs;
pub use eval::rag::RagEvalArgs;
pub use generate::GenerateBenchArgs;
pub use node::NodeBenchArgs;
pub use train::guard::TrainGuardArgs;
