//! HTTP routes, one file per endpoint family.

pub mod admin;
pub mod chat;
pub mod collections;
pub mod completions;
pub mod document_list;
pub mod embeddings;
pub mod files;
pub mod health;
pub mod metrics;
pub mod models;
pub mod moderations;
pub mod rerank;
pub mod responses;
pub mod tokenize;
pub mod tool_calls;
pub mod ui;
