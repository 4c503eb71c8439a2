//! `ragd eval`: accuracy measured through the HTTP API. A new evaluation
//! goes in a module of its own here, with its `...Args` and `run(args)`.

pub mod rag;
pub mod squad;
