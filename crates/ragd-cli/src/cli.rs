//! Command-line interface. Every flag also reads a `RAGD_...` environment
//! variable; `--config FILE` (or `RAGD_CONFIG`) supplies defaults from TOML.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::flags::{EmbedderFlags, ModelsDir};

#[derive(Debug, Parser)]
#[command(
    name = "ragd",
    version,
    about = "Self-hosted RAG inference server (OpenAI-compatible)"
)]
pub struct Cli {
    /// TOML file whose keys (`port = 8080`, `guard = "none"`, ...) are used
    /// where neither a flag nor a RAGD_* variable sets a value.
    #[arg(long, env = "RAGD_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Log format.
    #[arg(long, env = "RAGD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

pub use crate::telemetry::LogFormat;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(Box<ServeArgs>),
    /// Inspect and fetch models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Load .txt, .md and .jsonl files into a collection of a running
    /// server, or offline into a data folder (`--data-dir`).
    Ingest(crate::ingest_cmd::IngestArgs),
    /// Search a collection of a running server (`--answer`: and answer from
    /// it), or offline in a data folder (`--data-dir`).
    Query(crate::ingest_cmd::QueryArgs),
    /// Accuracy evaluations (against a running server, or in-process).
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Train models from labelled data.
    #[command(subcommand)]
    Train(TrainCommand),
}

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// A prompt-injection guard: a small head on frozen encoder features
    /// (the embedder, NanoGuard or both), trained on a labelled JSONL, into
    /// a folder `--guard` loads.
    Guard(Box<ragd_bench::TrainGuardArgs>),
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Retrieval recall@1/@5 and answer exact match/F1 on a SQuAD-format file.
    Rag(ragd_bench::RagEvalArgs),
    /// A guard's TPR, FPR, precision, ROC-AUC and TPR at FPR 1%/5%, per
    /// source, on a labelled JSONL (in-process).
    Guard(ragd_bench::GuardEvalArgs),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Embedding throughput (sentences/s) on SQuAD questions and paragraphs.
    Embed(ragd_bench::EmbedBenchArgs),
    /// Streaming completions load test of any OpenAI-compatible server
    /// (tokens/s, time to first token, inter-token latency per concurrency).
    Generate(ragd_bench::GenerateBenchArgs),
    /// What a node does with a running ragd: node figures (CPU, memory,
    /// GPUs), embeddings/s, guard windows/s, and a generation sweep over
    /// concurrency levels (tok/s, TTFT, inter-token latency, KV cache
    /// use); `--compare URL` runs the sweep against a second server too.
    Node(Box<ragd_bench::NodeBenchArgs>),
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the models installed in the models folder.
    List {
        #[command(flatten)]
        dir: ModelsDir,
    },
    /// Download a model from the Hugging Face hub into the models folder
    /// (needs network access; air-gapped installs copy a folder instead).
    Pull {
        /// Repository id, such as `sentence-transformers/all-MiniLM-L6-v2`.
        repo: String,
        /// Revision (branch, tag or commit).
        #[arg(long, env = "RAGD_REVISION", default_value = "main")]
        revision: String,
        #[command(flatten)]
        dir: ModelsDir,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to bind.
    #[arg(long, env = "RAGD_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to bind; 0 picks a free port (the bound address is logged).
    #[arg(long, env = "RAGD_PORT", default_value_t = 8080)]
    pub port: u16,

    #[command(flatten)]
    pub models: EmbedderFlags,

    /// Guard classifier: a name in the models folder (NanoGuard, a
    /// DeBERTa-v2 sequence classifier such as Prompt-Guard-86M, or a guard
    /// trained by `ragd train guard`), a path, or `none`. Repeat it (or
    /// give a comma-separated list) to run several guards side by side;
    /// `--guard-combine` says how their verdicts make one.
    #[arg(long, env = "RAGD_GUARD", default_value = "nanoguard", value_delimiter = ',')]
    pub guard: Vec<String>,
    /// Injection probability at or above which a text is flagged, or a
    /// false-positive rate (`fpr:0.01`) turned into that probability by
    /// the calibration of a guard trained by `ragd train guard`. Once for
    /// every guard, or once per `--guard`, in the same order.
    #[arg(
        long,
        env = "RAGD_GUARD_THRESHOLD",
        default_value = "0.5",
        value_delimiter = ','
    )]
    pub guard_threshold: Vec<ragd_models::guard::GuardThreshold>,
    /// How several guards' verdicts combine: `any` flags what any guard
    /// flags at its own threshold, `all` what every guard flags, `max`
    /// compares the highest score with the first threshold.
    #[arg(long, env = "RAGD_GUARD_COMBINE", default_value = "any")]
    pub guard_combine: ragd_service::guard_combine::GuardCombine,
    /// Screen chat completions with the guard: a flagged last user message
    /// is refused (400), and flagged retrieved chunks are left out of RAG
    /// prompts (listed in `blocked_sources`). The input is scored while
    /// retrieval runs.
    #[arg(long, env = "RAGD_GUARD_CHAT")]
    pub guard_chat: bool,
    /// Screen chat answers: RAG prompts get a canary the answer must never
    /// repeat (checked while streaming), and the guard scores the answer;
    /// a leak or a flagged answer is withheld (`finish_reason:
    /// content_filter`). Tenants may have their own policy (keys file,
    /// `/admin/tenants/{tenant}/guard-policy`).
    #[arg(long, env = "RAGD_GUARD_OUTPUT")]
    pub guard_output: bool,
    /// The canary put in RAG prompts (default: a fresh random one per request).
    #[arg(long, env = "RAGD_GUARD_CANARY")]
    pub guard_canary: Option<String>,
    /// Generator for chat and completions: a name in the models folder, a
    /// folder with one GGUF file or a Hugging Face Llama (config.json,
    /// safetensors, tokenizer.json), or `none`.
    #[arg(long, env = "RAGD_GENERATOR", default_value = "smollm2-135m-instruct-q4_1")]
    pub generator: String,
    /// Reranker for `/v1/rerank` and RAG's `"rerank": true`: a name in the
    /// models folder or a folder holding a one-label cross-encoder (a
    /// BERT or XLM-RoBERTa `ForSequenceClassification`: config.json,
    /// model.safetensors, tokenizer.json), or `none`.
    #[arg(long, env = "RAGD_RERANKER", default_value = "none")]
    pub reranker: String,
    /// Use the generator's GGUF weights exactly as stored. Q8_0, Q4_1,
    /// Q5_0, Q4_K, Q5_K and Q6_K always run ragd's kernels as stored; by
    /// default matrices of other quantized types (Q4_0, Q5_1, Q2_K, Q3_K)
    /// are re-quantized to Q8_0 at load: several times faster,
    /// near-lossless.
    #[arg(long, env = "RAGD_EXACT_WEIGHTS")]
    pub exact_weights: bool,
    /// Which forward runs the generator: `native` (ragd's CPU kernels),
    /// `candle` (device-generic: CPU, CUDA, Metal) or `auto` (native on the
    /// CPU, candle on a GPU).
    #[arg(long, env = "RAGD_GENERATOR_BACKEND", default_value = "auto")]
    pub generator_backend: ragd_models::llama::GeneratorBackend,
    /// Memory for the generator's KV cache, in MiB.
    #[arg(long, env = "RAGD_KV_CACHE_MB", default_value_t = 512)]
    pub kv_cache_mb: usize,
    /// Element type of the KV cache: f16 (half the memory and the bytes
    /// attention reads per token) or f32 (exact).
    #[arg(long, env = "RAGD_KV_CACHE_DTYPE", default_value = "f16")]
    pub kv_cache_dtype: ragd_models::llama::KvDtype,
    /// Token positions per KV cache block.
    #[arg(long, env = "RAGD_KV_BLOCK_SIZE", default_value_t = 16)]
    pub kv_block_size: usize,
    /// Longest sequence (prompt + generated tokens); capped by the model's own context.
    #[arg(long, env = "RAGD_MAX_CONTEXT", default_value_t = 4096)]
    pub max_context: usize,
    /// Most tokens in one generation step (decodes plus prefill chunks).
    /// Smaller keeps running streams' inter-token latency low while long
    /// prompts prefill; on 2 CPU cores 256 gave 16 streams an inter-token
    /// p99 of ~0.5 s against ~0.8 s at 512, for ~3% less throughput.
    #[arg(long, env = "RAGD_MAX_STEP_TOKENS", default_value_t = 256)]
    pub max_step_tokens: usize,
    /// Most sequences generating at once; more wait in the queue.
    #[arg(long, env = "RAGD_MAX_RUNNING", default_value_t = 64)]
    pub max_running: usize,
    /// Automatic prefix caching: full KV blocks of a prompt stay cached
    /// after its request (per tenant: tenants never share them), and a
    /// later prompt of the same tenant starting with the same tokens (a
    /// RAG template, a system prompt, retrieved sources) prefills only the
    /// rest; evicted least recently used when the cache is full.
    /// `--prefix-cache false` or `--no-prefix-cache` turns it off.
    #[arg(
        long,
        env = "RAGD_PREFIX_CACHE",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub prefix_cache: bool,
    /// Turns automatic prefix caching off (as `--prefix-cache false`).
    #[arg(long)]
    pub no_prefix_cache: bool,
    /// How the generator writes tool calls: hermes (`<tool_call>{...}`
    /// blocks), smollm2 (`<tool_call>[...]`), llama3 (bare JSON with
    /// `parameters`) or mistral (`[TOOL_CALLS][...]`). Default: judged
    /// from the model's chat template and name.
    #[arg(long, env = "RAGD_TOOL_CALL_FORMAT")]
    pub tool_call_format: Option<ragd_service::tools::ToolCallFormat>,
    /// Most inputs in one embeddings or moderations request, and most
    /// documents in one rerank request.
    #[arg(long, env = "RAGD_MAX_INPUTS", default_value_t = 2048)]
    pub max_inputs: usize,
    /// Longest single input text in bytes (longer gets 400). Bounds the
    /// tokenizer's work per input: BPE time grows fast on pathological texts
    /// such as very long runs of one character.
    #[arg(long, env = "RAGD_MAX_INPUT_BYTES", default_value_t = 64 * 1024)]
    pub max_input_bytes: usize,
    /// Largest request body in bytes (larger gets 413).
    /// Most guard windows (one full forward pass each, ~135 ms for
    /// NanoGuard on 2 cores) one moderation request or chat message may
    /// cost; longer inputs get 400 before any is scored.
    #[arg(long, env = "RAGD_MAX_GUARD_WINDOWS", default_value_t = 32)]
    pub max_guard_windows: usize,
    /// Longest chat conversation, all message contents together, in bytes
    /// (each message is also held to --max-input-bytes). Checked before any
    /// tokenizer or guard sees the text.
    #[arg(long, env = "RAGD_MAX_CHAT_BYTES", default_value_t = 256 * 1024)]
    pub max_chat_bytes: usize,
    #[arg(long, env = "RAGD_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Seconds to finish in-flight requests after SIGTERM or Ctrl-C.
    #[arg(long, env = "RAGD_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
    /// Deadline of a chat, completion or response request in seconds,
    /// streams included; shortened by a client's `x-stainless-timeout` or
    /// `x-request-timeout` header. Past it the generation is cancelled
    /// (504 `timeout`, or an error event ending the stream). 0: only the
    /// client's.
    #[arg(long, env = "RAGD_REQUEST_TIMEOUT_SECONDS", default_value_t = 600.0)]
    pub request_timeout_seconds: f64,

    #[command(flatten)]
    pub upstreams: crate::upstream_flags::UpstreamFlags,

    /// Folder of the knowledge base (every tenant's collections). Default:
    /// `$XDG_DATA_HOME/ragd`, else `~/.local/share/ragd`, else `./ragd-data`.
    #[arg(long, env = "RAGD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep collections in Postgres instead of the data folder:
    /// `postgres://user:password@host:5432/db` (needs the pgvector
    /// extension; the schema is migrated at start-up). Replicas given the
    /// same URL share every collection.
    #[arg(long, env = "RAGD_STORE", value_name = "URL")]
    pub store: Option<ragd_server::config::Secret>,
    /// API keys file (TOML, or JSON if it ends in `.json`): SHA-256 hashes
    /// of the keys and their tenants, managed through `/admin/keys`.
    /// Default: `keys.toml` in the data folder.
    #[arg(long, env = "RAGD_KEYS_FILE", conflicts_with = "keys")]
    pub keys_file: Option<PathBuf>,
    /// Where API keys live: `file` (the keys file, the default) or
    /// `postgres` (the `--store` database: every replica using it sees a
    /// new or revoked key within a second).
    #[arg(long, env = "RAGD_KEYS", value_name = "file|postgres", default_value = "file",
          value_parser = ["file", "postgres"], requires_if("postgres", "store"))]
    pub keys: String,
    /// File holding the admin key, which guards `/admin/*`.
    #[arg(long, env = "RAGD_ADMIN_KEY_FILE")]
    pub admin_key_file: Option<PathBuf>,
    /// The admin key itself. Prefer the variable or `--admin-key-file`:
    /// command lines are visible to every user of the machine.
    #[arg(long, env = "RAGD_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<ragd_server::config::Secret>,
    /// Requests per minute each API key may make (in single-user mode: the
    /// one user); past it, 429 with `Retry-After`. Unset: no limit.
    #[arg(long, env = "RAGD_RATE_LIMIT_RPM")]
    pub rate_limit_rpm: Option<std::num::NonZeroU32>,
    /// Requests a key may make at once before the per-minute pace applies;
    /// default: a whole minute's worth.
    #[arg(long, env = "RAGD_RATE_LIMIT_BURST", requires = "rate_limit_rpm")]
    pub rate_limit_burst: Option<std::num::NonZeroU32>,
    /// Failed authentications (wrong or missing key) each client address
    /// may make per minute, in bursts of as many; past it, every request
    /// from that address gets 429 until the budget refills. 0: no limit.
    #[arg(long, env = "RAGD_AUTH_FAILURES_PER_MINUTE", default_value_t = 30)]
    pub auth_failures_per_minute: u32,
    /// Most client connections open at once; past it new connections are
    /// closed at once. Lowered at start to fit the open-file limit.
    #[arg(long, env = "RAGD_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers, and that a
    /// kept-alive connection may sit idle, before it is closed.
    #[arg(long, env = "RAGD_HEADER_TIMEOUT_SECONDS", default_value_t = 10)]
    pub header_timeout_seconds: u64,
    /// Seconds a client may take to send a request's body (408 past it).
    #[arg(long, env = "RAGD_BODY_TIMEOUT_SECONDS", default_value_t = 30)]
    pub body_timeout_seconds: u64,
    /// Memory for cached answers of deterministic requests (greedy or
    /// seeded, not streamed), in MiB; 0 turns the cache off.
    #[arg(long, env = "RAGD_RESPONSE_CACHE_MB", default_value_t = 64)]
    pub response_cache_mb: u64,
    /// Turns on the semantic cache for chat completions: a cacheable
    /// request whose question embeds at least this cosine-similar to an
    /// earlier one in the same context gets that answer. Off by default: a
    /// paraphrase can need another answer.
    #[arg(long, env = "RAGD_SEMANTIC_CACHE_THRESHOLD")]
    pub semantic_cache_threshold: Option<f32>,
    /// Most questions the semantic cache keeps (oldest dropped first).
    #[arg(long, env = "RAGD_SEMANTIC_CACHE_ENTRIES", default_value_t = 10_000)]
    pub semantic_cache_entries: usize,
    /// Memory for the semantic cache's answers and vectors, in MiB; one
    /// answer may take at most a sixteenth of it.
    #[arg(long, env = "RAGD_SEMANTIC_CACHE_MB", default_value_t = 64)]
    pub semantic_cache_mb: usize,
    /// Seconds a cached answer is served (both caches).
    #[arg(long, env = "RAGD_RESPONSE_CACHE_TTL_SECONDS", default_value_t = 600)]
    pub response_cache_ttl_seconds: u64,
    /// Redis shared by replicas behind a load balancer
    /// (`redis://[:password@]host:6379[/db]`): per-key rate limits hold
    /// across all replicas, and the exact response cache is shared. While
    /// Redis is unreachable each replica limits and caches on its own
    /// (`ragd_redis_up` 0, a warning), and goes back to Redis when it
    /// answers. Unset: all state is per process.
    #[arg(long, env = "RAGD_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<ragd_server::config::Secret>,
    /// Longest a Redis call may take (ms) before the request goes on with
    /// per-process state; Redis is then skipped for a second.
    #[arg(long, env = "RAGD_REDIS_TIMEOUT_MS", default_value_t = 100, requires = "redis_url",
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub redis_timeout_ms: u64,
    /// Single-user mode: no API keys, every request belongs to the tenant
    /// `default`. Only on a loopback address (127.0.0.1, ::1).
    #[arg(long, env = "RAGD_NO_AUTH")]
    pub no_auth: bool,
    /// Do not serve the web playground at `/` and `/playground` (the API
    /// is unchanged).
    #[arg(long, env = "RAGD_NO_UI")]
    pub no_ui: bool,
    /// Most documents in one upsert request.
    #[arg(long, env = "RAGD_MAX_DOCUMENTS", default_value_t = 256)]
    pub max_documents: usize,
    /// Longest document text in bytes.
    #[arg(long, env = "RAGD_MAX_DOCUMENT_BYTES", default_value_t = 1 << 20)]
    pub max_document_bytes: usize,
    /// Largest `top_k` of a search.
    #[arg(long, env = "RAGD_MAX_TOP_K", default_value_t = 100)]
    pub max_top_k: usize,
    /// Most collections one tenant may have (403 `quota_exceeded` past it).
    #[arg(long, env = "RAGD_MAX_COLLECTIONS_PER_TENANT", default_value_t = 100)]
    pub max_collections_per_tenant: usize,
    /// Most documents one collection may hold (403 `quota_exceeded` past it).
    #[arg(long, env = "RAGD_MAX_DOCUMENTS_PER_COLLECTION", default_value_t = 1_000_000)]
    pub max_documents_per_collection: usize,
    /// Jinja template of retrieval-augmented prompts (variables `question`
    /// and `sources`, each with `text`, `document_id`, `score`, `metadata`);
    /// default: the concise question-answering prompt in the README.
    #[arg(long, env = "RAGD_RAG_TEMPLATE")]
    pub rag_template: Option<PathBuf>,

    #[command(flatten)]
    pub otlp: crate::telemetry::OtlpFlags,
}
