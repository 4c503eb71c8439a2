//! ragd-server: the OpenAI-compatible HTTP API, configuration, metrics and
//! the command line of the `ragd` binary.

pub mod app;
pub mod auth;
pub mod body_budget;
pub mod cli;
pub mod config_file;
pub mod error;
pub mod generate;
pub mod guard;
pub mod http_server;
pub mod ingest_cmd;
pub mod input;
pub mod json;
pub mod knowledge;
pub mod local_kb;
pub mod metrics;
pub mod models;
pub mod models_cmd;
pub mod path;
pub mod rag;
pub mod rate_limit;
pub mod response_cache;
pub mod routes;
pub mod semantic_cache;
pub mod serve;
pub mod state;
pub mod telemetry;
