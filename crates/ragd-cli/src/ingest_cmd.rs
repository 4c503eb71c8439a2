//! `ragd ingest` and `ragd query`: load files into a collection and ask it
//! questions, through a running server's HTTP API or, with `--data-dir`,
//! offline on its data folder (`ragd_service::local`).
//!
//! Files: PDF, HTML, Markdown, DOCX and text files are one document each
//! (id: the path as given, metadata `source` and `format`; text from
//! `ragd_docs`); `.jsonl` holds one document per line, `{"id", "text",
//! "metadata"}` (id defaults to `FILE:LINE`). Directories are walked
//! recursively; a file that cannot be read is reported and skipped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use ragd_client::{progress, runtime, ApiClient, ServerFlags};
use ragd_index::{DocumentInput, Metadata};
use reqwest::Method;
use serde_json::{json, Value};

use ragd_service::collections::{self, upsert_documents, CollectionHandle};
use ragd_service::local::LocalCollection;
use ragd_service::tenant::DEFAULT_TENANT;
use ragd_service::{CollectionLimits, ModelHandle};

use crate::flags::EmbedderFlags;

/// Working directly on a data folder instead of through a server.
#[derive(Debug, Clone, Args)]
pub struct LocalFlags {
    /// Work offline on this knowledge-base folder (what `ragd serve
    /// --data-dir` serves) instead of through a server; no server may be
    /// running on it.
    #[arg(long, value_name = "DIR", conflicts_with = "url")]
    pub data_dir: Option<PathBuf>,
    /// Tenant whose collection to use, with `--data-dir`. Default: `default`,
    /// the tenant of `ragd serve --no-auth`.
    #[arg(long, value_name = "NAME", requires = "data_dir")]
    pub tenant: Option<String>,
    #[command(flatten)]
    pub embedder: EmbedderFlags,
}

impl LocalFlags {
    /// The collection `name` in the data folder of `--data-dir` (`None`
    /// without one), created when `create` says so.
    fn open(&self, name: &str, create: bool) -> anyhow::Result<Option<LocalCollection>> {
        let Some(dir) = &self.data_dir else {
            return Ok(None);
        };
        let tenant = self.tenant.as_deref().unwrap_or(DEFAULT_TENANT);
        let models = self.embedder.models_config();
        LocalCollection::open(dir, tenant, name, create, &models).map(Some)
    }
}

#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub server: ServerFlags,
    /// Collection to upsert into (created when missing).
    #[arg(long)]
    pub collection: String,
    /// Documents per request (per upsert with `--data-dir`).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Files or directories: .pdf, .html, .md, .docx, .txt and .jsonl files
    /// (folders are walked; other files in them are skipped).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten, next_help_heading = "Offline, on a data folder")]
    pub local: LocalFlags,
}

#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub server: ServerFlags,
    #[arg(long)]
    pub collection: String,
    /// Chunks to retrieve.
    #[arg(long, default_value_t = 4)]
    pub top_k: usize,
    /// How to search: by meaning (dense vectors), by words (lexical BM25),
    /// or both fused by reciprocal rank.
    #[arg(long, default_value = "hybrid", value_parser = ["dense", "lexical", "hybrid"])]
    pub mode: String,
    /// Also generate an answer from the retrieved chunks (needs a server).
    #[arg(long, conflicts_with = "data_dir")]
    pub answer: bool,
    /// Generator model for `--answer` (default: the server's generator).
    #[arg(long)]
    pub model: Option<String>,
    pub question: String,
    #[command(flatten, next_help_heading = "Offline, on a data folder")]
    pub local: LocalFlags,
}

/// Every supported file under `paths`, in a stable order. A file named
/// explicitly must be supported; other files inside directories are skipped.
fn files(paths: &[PathBuf], named: bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            out.extend(files(&entries, false)?);
        } else if ragd_docs::Format::of(&p.to_string_lossy()).is_some() {
            anyhow::ensure!(p.exists(), "{}: no such file", p.display());
            out.push(p.clone());
        } else if named {
            anyhow::bail!(
                "{}: not a directory or a file ragd reads ({})",
                p.display(),
                ragd_docs::EXTENSIONS
            );
        }
    }
    Ok(out)
}

/// The documents of one file.
fn documents(path: &Path) -> anyhow::Result<Vec<DocumentInput>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.display().to_string();
    let docs = ragd_docs::extract(&name, &bytes)?;
    Ok(docs
        .into_iter()
        .map(|d| DocumentInput {
            id: d.id,
            text: d.text,
            metadata: d.metadata,
        })
        .collect())
}

/// Where `ragd ingest` upserts: a server's collection, or one in a data
/// folder opened by this process.
enum Target {
    Server { client: ApiClient, path: String },
    Local(Arc<dyn CollectionHandle>, Box<ModelHandle>),
}

impl Target {
    /// The server's collection `name`, created when missing.
    async fn server(flags: &ServerFlags, name: &str) -> anyhow::Result<Self> {
        let client = ApiClient::from_flags(flags)?;
        let path = format!("/v1/collections/{name}");
        let (status, _) = client.call(Method::GET, &path, None).await?;
        if status == 404 {
            client
                .ok(Method::POST, "/v1/collections", Some(&json!({"name": name})))
                .await?;
        }
        Ok(Self::Server {
            client,
            path: format!("{path}/documents"),
        })
    }

    /// Upserts `batch`; returns the chunks written.
    async fn upsert(&self, batch: &[DocumentInput]) -> anyhow::Result<usize> {
        match self {
            Self::Server { client, path } => {
                let v = client
                    .ok(Method::POST, path, Some(&json!({"documents": batch})))
                    .await?;
                Ok(v["chunks"].as_u64().unwrap_or(0) as usize)
            }
            Self::Local(collection, handle) => {
                let limits = CollectionLimits::default();
                let done = upsert_documents(collection.as_ref(), handle, batch.to_vec(), &limits).await?;
                Ok(done.outcome.chunks)
            }
        }
    }
}

pub fn run_ingest(args: IngestArgs) -> anyhow::Result<()> {
    let files = files(&args.paths, true)?;
    anyhow::ensure!(
        !files.is_empty(),
        "no files ragd reads ({}) among the paths",
        ragd_docs::EXTENSIONS
    );
    let (mut docs, mut failed) = (Vec::new(), Vec::new());
    let reading = progress(files.len() as u64, "files read");
    for f in &files {
        match documents(f) {
            Ok(found) => docs.extend(found),
            Err(e) => failed.push(format!("{}: {e:#}", f.display())),
        }
        reading.inc(1);
    }
    reading.finish();
    for why in &failed {
        eprintln!("skipped {why}");
    }
    anyhow::ensure!(
        !docs.is_empty(),
        "no documents in the files ({} could not be read)",
        failed.len()
    );
    let local = args.local.open(&args.collection, true)?;
    runtime()?.block_on(async {
        let target = match &local {
            Some(l) => Target::Local(l.collection.clone(), Box::new(l.handle.clone())),
            None => Target::server(&args.server, &args.collection).await?,
        };
        let bar = progress(docs.len() as u64, "documents");
        let mut chunks = 0;
        for batch in docs.chunks(args.batch.max(1)) {
            chunks += target
                .upsert(batch)
                .await
                .with_context(|| format!("upserting the batch that starts with `{}`", batch[0].id))?;
            bar.inc(batch.len() as u64);
        }
        bar.finish();
        println!(
            "ingested {} documents ({chunks} chunks) from {} files into `{}`; {} files skipped",
            docs.len(),
            files.len() - failed.len(),
            args.collection,
            failed.len()
        );
        anyhow::Ok(())
    })?;
    local.map_or(Ok(()), LocalCollection::close)
}

pub fn run_query(args: QueryArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.top_k > 0, "--top-k must be at least 1");
    if let Some(local) = args.local.open(&args.collection, false)? {
        return runtime()?.block_on(async {
            let ranking = collections::Ranking::parse(Some(&args.mode), None, None, None)?;
            let found = collections::search(
                local.collection.as_ref(),
                &local.handle,
                args.question,
                args.top_k,
                Metadata::new(),
                ranking,
            )
            .await?;
            print_sources(&serde_json::to_value(found.chunks)?);
            Ok(())
        });
    }
    runtime()?.block_on(async move {
        let client = ApiClient::from_flags(&args.server)?;
        if !args.answer {
            let body = json!({"query": args.question, "top_k": args.top_k, "mode": args.mode});
            let v = client
                .ok(
                    Method::POST,
                    &format!("/v1/collections/{}/search", args.collection),
                    Some(&body),
                )
                .await?;
            print_sources(&v["data"]);
            return Ok(());
        }
        let model = match args.model {
            Some(m) => m,
            None => ragd_client::first_model(&client.http, &client.url, client.api_key.as_deref()).await?,
        };
        let body = json!({
            "model": model,
            "messages": [{"role": "user", "content": args.question}],
            "rag": {"collection": args.collection, "top_k": args.top_k, "mode": args.mode},
            "temperature": 0,
        });
        let v = client
            .ok(Method::POST, "/v1/chat/completions", Some(&body))
            .await?;
        println!(
            "{}\n",
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .trim()
        );
        print_sources(&v["sources"]);
        Ok(())
    })
}

fn print_sources(hits: &Value) {
    for (i, h) in hits.as_array().into_iter().flatten().enumerate() {
        let text: String = h["text"].as_str().unwrap_or_default().chars().take(160).collect();
        println!(
            "[{}] {:.3} {} #{}: {}",
            i + 1,
            h["score"].as_f64().unwrap_or(0.0),
            h["document_id"].as_str().unwrap_or_default(),
            h["chunk_index"],
            text.replace('\n', " ")
        );
    }
}
