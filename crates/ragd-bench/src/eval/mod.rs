//! `ragd eval`: accuracy measured through the HTTP API (`rag`), or
//! in-process (`guard`). A new evaluation goes in a module of its own
//! here, with its `...Args` and `run(args)`.

pub mod guard;
pub mod guard_metrics;
pub mod rag;
pub mod squad;
