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

mod args;
pub(crate) mod load;
mod prompt;
mod report;

use std::sync::Arc;

use anyhow::Context;
use ragd_client::{first_model, runtime};
use serde_json::json;

pub use args::{BenchServer, GenerateBenchArgs, GenerationShape};
pub(crate) use load::RequestShape;
use load::{run_level, Target};
pub use prompt::prompt;
pub use report::{print_table, LevelReport};

pub fn run(args: GenerateBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.concurrency.is_empty() && !args.concurrency.contains(&0),
        "--concurrency needs levels of at least 1"
    );
    runtime()?.block_on(async move {
        let endpoint = args.server.endpoint(args.shape.timeout())?;
        let url = endpoint.url.clone();
        let model = match args.server.model {
            Some(m) => m,
            None => first_model(&endpoint.client, &url, endpoint.api_key.as_deref()).await?,
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
            args.shared_prefix_tokens, args.shape.prompt_tokens, args.shape.max_tokens, args.requests_per_client
        );
        let target = Arc::new(Target::new(
            endpoint,
            model.clone(),
            RequestShape {
                prompt_tokens: [args.shared_prefix_tokens, args.shape.prompt_tokens],
                max_tokens: args.shape.max_tokens,
                response_format,
                rag: (args.rag_collection.clone()).map(|c| (c, args.rag_top_k)),
            },
        ));
        let mut levels = Vec::new();
        for &c in &args.concurrency {
            eprintln!("bench generate: concurrency {c}");
            let hidden = indicatif::ProgressBar::hidden();
            let report = run_level(target.clone(), c, args.requests_per_client.max(1), &hidden).await;
            eprintln!(
                "bench generate: concurrency {c}: {:.1} tok/s, {} errors",
                report.tokens_per_second(),
                report.errors.total()
            );
            levels.push(report);
        }
        print_table(&label, &levels);
        if let Some(path) = &args.json {
            let out = json!({
                "label": label,
                "url": url,
                "model": model,
                "prompt_tokens": args.shape.prompt_tokens,
                "shared_prefix_tokens": args.shared_prefix_tokens,
                "max_tokens": args.shape.max_tokens,
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
