//! `ragd eval`: accuracy measured through the HTTP API.

pub mod rag;
pub mod squad;
