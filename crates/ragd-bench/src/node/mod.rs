//! `ragd bench node`: what a node does with ragd, against a running
//! server. It reports the node the bench runs on (CPU, memory, GPUs via
//! `nvidia-smi`), embeddings/s of short and passage-length texts
//! (`/v1/embeddings`), guard windows/s (`/v1/moderations`, texts of one
//! window each), and a generation sweep over concurrency levels (`ragd
//! bench generate`'s load: output tok/s, TTFT and inter-token p50/p99, KV
//! cache use read from `/metrics` meanwhile), stopped at the first level
//! the server refuses (429/503). `--compare URL` runs the same sweep
//! against a second OpenAI-compatible server (llama-server, vLLM, another
//! ragd) right after, and the ratios are printed. Markdown goes to
//! standard output, progress to standard error, `--json FILE` keeps it all.
//!
//! Run it on the server's node: the node figures are the bench's machine.

mod batch_load;
mod kv_sampler;
mod markdown;
mod prometheus;
mod report;
mod server;
mod sweep;
mod system;
mod text_loads;

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ragd_client::{progress, runtime};

use crate::generate::{BenchServer, GenerationShape, RequestShape};
use crate::http::Endpoint;
pub use markdown::render;
pub use report::NodeReport;
use server::ServerModels;
use sweep::sweep;
pub use system::NodeInfo;
use text_loads::TextLoadArgs;

#[derive(Debug, Clone, Args)]
pub struct NodeBenchArgs {
    #[command(flatten)]
    pub server: BenchServer,
    /// Name of the server under test in the tables.
    #[arg(long, env = "RAGD_BENCH_LABEL", default_value = "ragd")]
    pub label: String,
    #[command(flatten)]
    pub shape: GenerationShape,
    /// Generation concurrency levels (clients), comma-separated; levels
    /// after one the server refuses (429/503) are not run.
    #[arg(
        long,
        env = "RAGD_BENCH_CONCURRENCY",
        value_delimiter = ',',
        default_value = "1,4,16,64,256"
    )]
    pub concurrency: Vec<usize>,
    /// Generation requests each client sends back to back.
    #[arg(long, env = "RAGD_BENCH_REQUESTS_PER_CLIENT", default_value_t = 2)]
    pub requests_per_client: usize,
    #[command(flatten)]
    pub texts: TextLoadArgs,
    /// A second OpenAI-compatible server: the same generation sweep runs
    /// against it after the first, and the ratios are printed.
    #[arg(long, env = "RAGD_BENCH_COMPARE_URL")]
    pub compare: Option<String>,
    /// Bearer token of `--compare`.
    #[arg(long, env = "RAGD_BENCH_COMPARE_API_KEY")]
    pub compare_api_key: Option<String>,
    /// Model of `--compare`; default: its generator (else first) model.
    #[arg(long, env = "RAGD_BENCH_COMPARE_MODEL")]
    pub compare_model: Option<String>,
    /// Name of `--compare` in the tables.
    #[arg(long, env = "RAGD_BENCH_COMPARE_LABEL", default_value = "peer")]
    pub compare_label: String,
    /// Write everything measured as JSON to this file.
    #[arg(long, env = "RAGD_BENCH_JSON_OUT")]
    pub json: Option<PathBuf>,
}

/// Measures, prints the Markdown tables, writes `--json`.
pub fn run(args: NodeBenchArgs) -> anyhow::Result<()> {
    let report = measure(args.clone())?;
    print!("{}", render(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A server to sweep: where, its name in the tables, and its generator
/// (`model` when given, else the generator `/v1/models` lists).
async fn sweep_target(
    endpoint: Endpoint,
    label: &str,
    model: Option<String>,
) -> anyhow::Result<(Endpoint, String, String, ServerModels)> {
    let models = ServerModels::fetch(&endpoint).await?;
    let model = match model.or_else(|| models.generator.as_ref().map(|m| m.id.clone())) {
        Some(m) => m,
        None => anyhow::bail!("{}/v1/models lists no generator; pass a model", endpoint.url),
    };
    Ok((endpoint, label.to_string(), model, models))
}

/// Runs every part of the benchmark.
pub fn measure(args: NodeBenchArgs) -> anyhow::Result<NodeReport> {
    anyhow::ensure!(
        !args.concurrency.is_empty() && !args.concurrency.contains(&0),
        "--concurrency needs levels of at least 1"
    );
    let per_client = args.requests_per_client.max(1);
    let shape = || RequestShape::completions(args.shape.prompt_tokens, args.shape.max_tokens);
    runtime()?.block_on(async {
        let endpoint = args.server.endpoint(args.shape.timeout())?;
        let mut targets = vec![sweep_target(endpoint.clone(), &args.label, args.server.model.clone()).await?];
        if let Some(url) = &args.compare {
            let peer = Endpoint::new(url, args.compare_api_key.clone(), args.shape.timeout())?;
            targets.push(sweep_target(peer, &args.compare_label, args.compare_model.clone()).await?);
        }
        let models = targets[0].3.clone();
        let generation_requests: usize = args.concurrency.iter().map(|c| c * per_client + 1).sum();
        let bar = progress(
            (args.texts.requests(&models) + targets.len() * generation_requests) as u64,
            "bench node",
        );
        let node = NodeInfo::probe();
        let (embeddings, guard) = args.texts.run(&endpoint, &models, &bar).await;
        let mut sweeps = Vec::new();
        for (endpoint, label, model, _) in targets {
            sweeps.push(
                sweep(
                    endpoint,
                    label,
                    model,
                    shape(),
                    &args.concurrency,
                    per_client,
                    &bar,
                )
                .await,
            );
        }
        let compare = (sweeps.len() > 1).then(|| sweeps.remove(1));
        let generation = sweeps.remove(0);
        bar.finish_and_clear();
        Ok(NodeReport {
            node,
            url: endpoint.url.clone(),
            models,
            embeddings,
            guard,
            settings: report::GenerationSettings {
                prompt_tokens: args.shape.prompt_tokens,
                max_tokens: args.shape.max_tokens,
                requests_per_client: per_client,
            },
            generation,
            compare,
        })
    })
}
