//! HTTP routes, one file per endpoint family.

pub mod embeddings;
pub mod health;
pub mod models;
pub mod moderations;
