//! ragd-server: ragd's HTTP edge. The OpenAI-compatible API (routes),
//! its middleware (authentication, rate limits, body budget, request
//! metrics), request and response types, SSE, the one error table, and
//! starting and stopping a server from a [`config::ServeConfig`].
//!
//! What a request does is in `ragd-service`; this crate only turns HTTP
//! into calls to it and its results back into HTTP.
//!
//! - a new endpoint: a handler in `routes/`, its route in [`app`];
//! - a new error kind: [`error`] (the one table);
//! - a new setting of `ragd serve`: [`config`], then the flag in `ragd-cli`;
//! - what happens between a stop signal and the exit: [`drain`], [`serve`].

pub mod app;
pub mod auth;
pub mod body_budget;
pub mod cache_http;
pub mod config;
pub mod deadline;
pub mod drain;
pub mod error;
pub mod http_server;
pub mod input;
pub mod json;
pub mod knowledge_base;
pub mod metrics;
pub mod path;
pub mod rate_limit;
pub mod routes;
pub mod serve;
pub mod server_timing;
pub mod shared;
pub mod sse;
pub mod state;
pub mod trace_context;
pub mod upstream;
