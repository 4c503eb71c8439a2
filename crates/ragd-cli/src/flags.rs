//! Flags shared by several commands: the models folder and the embedder
//! (`ragd serve`, offline `ragd ingest` / `ragd query --data-dir`).

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ModelsDir {
    /// Folder holding models by name (what `models/fetch` fills).
    #[arg(long, env = "RAGD_MODELS_DIR", default_value = "models/cache")]
    pub models_dir: PathBuf,
}

/// The models folder, the embedding model and how models run (device,
/// batch budget): what `ragd serve` loads its embedder from, and the
/// offline `ragd ingest` / `ragd query --data-dir` too, so both embed alike.
/// The server's other models use the same folder, device and budget.
#[derive(Debug, Clone, Args)]
pub struct EmbedderFlags {
    #[command(flatten)]
    pub dir: ModelsDir,
    /// Embedding model: a name in the models folder, a path to a folder, or `none`.
    #[arg(long, env = "RAGD_EMBEDDER", default_value = "all-minilm-l6-v2")]
    pub embedder: String,
    /// Device: auto, cpu, cuda, cuda:N or metal.
    #[arg(long, env = "RAGD_DEVICE", default_value = "auto")]
    pub device: ragd_models::DeviceChoice,
    /// Requests that may wait per model before new ones get 429.
    #[arg(long, env = "RAGD_QUEUE_CAPACITY", default_value_t = 1024)]
    pub queue_capacity: usize,
    /// Requests one tenant may have waiting per model, so that one tenant's
    /// burst cannot fill the queue for all (default: a quarter of
    /// --queue-capacity). Waiting requests are served round-robin by tenant.
    #[arg(long, env = "RAGD_PER_TENANT_QUEUE_CAPACITY")]
    pub per_tenant_queue_capacity: Option<usize>,
    /// Most tokens in one embedding or classification batch.
    #[arg(long, env = "RAGD_MAX_BATCH_TOKENS", default_value_t = 16_384)]
    pub max_batch_tokens: usize,
    /// Most sequences in one embedding or classification batch.
    #[arg(long, env = "RAGD_MAX_BATCH_SEQS", default_value_t = 256)]
    pub max_batch_seqs: usize,
}
