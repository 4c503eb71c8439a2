//! The flags of `ragd bench generate`, and the groups of them that `ragd
//! bench node` shares: the server under test and what each generation
//! request asks.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::http::Endpoint;

/// The server under test.
#[derive(Debug, Clone, Args)]
pub struct BenchServer {
    /// Base URL of the server (without `/v1`).
    #[arg(long, env = "RAGD_BENCH_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Bearer token sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "RAGD_BENCH_API_KEY")]
    pub api_key: Option<String>,
    /// Model name; default: the generator (else the first id) of `GET /v1/models`.
    #[arg(long, env = "RAGD_BENCH_MODEL")]
    pub model: Option<String>,
}

impl BenchServer {
    /// One connection per request; requests give up after `timeout`.
    pub fn endpoint(&self, timeout: Duration) -> anyhow::Result<Endpoint> {
        Endpoint::new(&self.url, self.api_key.clone(), timeout)
    }
}

/// What every generation request asks, and how long it may take.
#[derive(Debug, Clone, Args)]
pub struct GenerationShape {
    /// Approximate prompt length in tokens (about 0.87 English words per token).
    #[arg(long, env = "RAGD_BENCH_PROMPT_TOKENS", default_value_t = 128)]
    pub prompt_tokens: usize,
    /// Tokens to generate per request (`max_tokens`, with `ignore_eos`).
    #[arg(long, env = "RAGD_BENCH_MAX_TOKENS", default_value_t = 128)]
    pub max_tokens: usize,
    /// Seconds one request may take before it counts as an error.
    #[arg(long, env = "RAGD_BENCH_TIMEOUT_SECONDS", default_value_t = 600)]
    pub timeout_seconds: u64,
}

impl GenerationShape {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }
}

#[derive(Debug, Clone, Args)]
pub struct GenerateBenchArgs {
    #[command(flatten)]
    pub server: BenchServer,
    #[command(flatten)]
    pub shape: GenerationShape,
    /// Concurrency levels (clients), comma-separated.
    #[arg(
        long,
        env = "RAGD_BENCH_CONCURRENCY",
        value_delimiter = ',',
        default_value = "1,4,16"
    )]
    pub concurrency: Vec<usize>,
    /// Requests each client sends back to back.
    #[arg(long, env = "RAGD_BENCH_REQUESTS_PER_CLIENT", default_value_t = 4)]
    pub requests_per_client: usize,
    /// RAG-shaped prompts: about this many tokens of sources shared by
    /// every request of the run, before the `--prompt-tokens` of the
    /// request's own question. 0: every prompt is its own.
    #[arg(long, env = "RAGD_BENCH_SHARED_PREFIX_TOKENS", default_value_t = 0)]
    pub shared_prefix_tokens: usize,
    /// Write every level as JSON to this file (`-` for standard output).
    #[arg(long, env = "RAGD_BENCH_JSON_OUT")]
    pub json: Option<PathBuf>,
    /// Name of the server under test in the table and the JSON (default: the URL).
    #[arg(long, env = "RAGD_BENCH_LABEL")]
    pub label: Option<String>,
    /// A JSON file holding a `response_format` object sent with every
    /// request (structured outputs), e.g. `{"type": "json_object"}`.
    #[arg(long, env = "RAGD_BENCH_RESPONSE_FORMAT")]
    pub response_format: Option<PathBuf>,
    /// Send RAG chat requests over this collection (ragd only) instead of
    /// completions: questions about ragd's docs (`--prompt-tokens` and
    /// `--shared-prefix-tokens` do not apply).
    #[arg(long, env = "RAGD_BENCH_RAG_COLLECTION")]
    pub rag_collection: Option<String>,
    /// Chunks each RAG request puts into its prompt.
    #[arg(long, env = "RAGD_BENCH_RAG_TOP_K", default_value_t = 3)]
    pub rag_top_k: usize,
}
