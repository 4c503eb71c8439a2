//! `ragd bench generate`: a load generator for any OpenAI-compatible
//! completions endpoint (ragd, llama.cpp's `llama-server`, vLLM, ...).
//!
//! For each concurrency level C, C clients each send `--requests-per-client`
//! streaming `POST /v1/completions` requests back to back, after one
//! unmeasured warm-up request. Every request asks for exactly `--max-tokens`
//! tokens (`ignore_eos`, a llama.cpp and vLLM extension) from a
//! deterministic English prompt of about `--prompt-tokens` tokens that starts
//! with its request number, so prompt caches cannot serve it. With
//! `--shared-prefix-tokens N` the prompts are RAG-shaped instead: the same
//! ~N tokens of sources for every request of the run (a prefix cache can
//! hold them), then a numbered question of ~`--prompt-tokens` tokens.
//!
//! Measured per request: time to first token (request sent to the first
//! chunk with text), the gaps between content chunks (inter-token latency;
//! a chunk that carries several tokens has its gap divided among them) and
//! the end-to-end time. Output tokens come from the final `usage` chunk
//! (`stream_options.include_usage`), else from the number of content chunks.
//! `--rag-collection NAME` sends streaming RAG chat requests instead
//! (`/v1/chat/completions` with ragd's `rag` extension: numbered questions
//! about ragd's docs, `--rag-top-k` chunks in the prompt), so the whole
//! RAG path is timed: guard, retrieval, screening, prefill, decode.
//! `benches/generate_vs_llama_server.sh` runs it against ragd and
//! llama-server in turn; `benches/guard_cost.sh` the RAG path with and
//! without the guard.

mod load;
mod prompt;
mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ragd_client::{first_model, runtime};
use serde_json::json;

use load::{run_level, RequestShape, Target};
pub use prompt::prompt;
pub use report::{print_table, LevelReport};

#[derive(Debug, Clone, Args)]
pub struct GenerateBenchArgs {
    /// Base URL of the server (without `/v1`).
    #[arg(long, env = "RAGD_BENCH_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Bearer token sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "RAGD_BENCH_API_KEY")]
    pub api_key: Option<String>,
    /// Model name; default: the generator (else the first id) of `GET /v1/models`.
    #[arg(long, env = "RAGD_BENCH_MODEL")]
    pub model: Option<String>,
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
    /// Approximate prompt length in tokens (about 0.87 English words per token).
    #[arg(long, env = "RAGD_BENCH_PROMPT_TOKENS", default_value_t = 128)]
    pub prompt_tokens: usize,
    /// RAG-shaped prompts: about this many tokens of sources shared by
    /// every request of the run, before the `--prompt-tokens` of the
    /// request's own question. 0: every prompt is its own.
    #[arg(long, env = "RAGD_BENCH_SHARED_PREFIX_TOKENS", default_value_t = 0)]
    pub shared_prefix_tokens: usize,
    /// Tokens to generate per request (`max_tokens`, with `ignore_eos`).
    #[arg(long, env = "RAGD_BENCH_MAX_TOKENS", default_value_t = 128)]
    pub max_tokens: usize,
    /// Write every level as JSON to this file (`-` for standard output).
    #[arg(long, env = "RAGD_BENCH_JSON_OUT")]
    pub json: Option<PathBuf>,
    /// Name of the server under test in the table and the JSON (default: the URL).
    #[arg(long, env = "RAGD_BENCH_LABEL")]
    pub label: Option<String>,
    /// Seconds one request may take before it counts as an error.
    #[arg(long, env = "RAGD_BENCH_TIMEOUT_SECONDS", default_value_t = 600)]
    pub timeout_seconds: u64,
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

pub fn run(args: GenerateBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.concurrency.is_empty() && !args.concurrency.contains(&0),
        "--concurrency needs levels of at least 1"
    );
    let max_c = args.concurrency.iter().copied().max().unwrap_or(1);
    runtime()?.block_on(async move {
        let url = args.url.trim_end_matches('/').trim_end_matches("/v1").to_string();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(max_c + 1)
            .timeout(Duration::from_secs(args.timeout_seconds))
            .build()?;
        let model = match args.model {
            Some(m) => m,
            None => first_model(&client, &url, args.api_key.as_deref()).await?,
        };
        let label = args.label.unwrap_or_else(|| url.clone());
        let response_format = match &args.response_format {
            Some(path) => Some(serde_json::from_str::<serde_json::Value>(
                &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            )?),
            None => None,
        };
        eprintln!(
            "bench generate: {url} model `{model}`, {} shared + {} prompt tokens, {} new tokens, {} requests per client",
            args.shared_prefix_tokens, args.prompt_tokens, args.max_tokens, args.requests_per_client
        );
        let target = Arc::new(Target::new(
            client,
            url.clone(),
            args.api_key,
            model.clone(),
            RequestShape {
                prompt_tokens: [args.shared_prefix_tokens, args.prompt_tokens],
                max_tokens: args.max_tokens,
                response_format,
                rag: (args.rag_collection.clone()).map(|c| (c, args.rag_top_k)),
            },
        ));
        let mut levels = Vec::new();
        for &c in &args.concurrency {
            eprintln!("bench generate: concurrency {c}");
            let report = run_level(target.clone(), c, args.requests_per_client.max(1)).await;
            eprintln!(
                "bench generate: concurrency {c}: {:.1} tok/s, {} errors",
                report.tokens_per_second(),
                report.errors
            );
            levels.push(report);
        }
        print_table(&label, &levels);
        if let Some(path) = &args.json {
            let out = json!({
                "label": label,
                "url": url,
                "model": model,
                "prompt_tokens": args.prompt_tokens,
                "shared_prefix_tokens": args.shared_prefix_tokens,
                "max_tokens": args.max_tokens,
                "requests_per_client": args.requests_per_client,
                "rag": args.rag_collection.as_ref().map(|c| json!({"collection": c, "top_k": args.rag_top_k})),
                "levels": levels.iter().map(LevelReport::to_json).collect::<Vec<_>>(),
            });
            let text = serde_json::to_string_pretty(&out)?;
            if path.as_os_str() == "-" {
                println!("{text}");
            } else {
                std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Ok(())
    })
}
