//! The embedding and guard parts of `ragd bench node`: short and
//! passage-length texts through `/v1/embeddings`, one-window texts through
//! `/v1/moderations`, each in batched requests from a few clients.

use clap::Args;
use indicatif::ProgressBar;

use super::batch_load::BatchLoad;
use super::report::{Part, TextLoad};
use super::server::{ServedModel, ServerModels};
use crate::generate::prompt;
use crate::http::Endpoint;

/// Tokens of a short text (a query) and of a passage (about a SQuAD
/// paragraph), each capped to fit the embedder's input.
const SHORT_TOKENS: usize = 16;
const PASSAGE_TOKENS: usize = 160;
/// Tokens of a guard text: at most a third of the guard's window, so that
/// another tokenizer than the generator's (whose words-per-token the
/// prompts assume) still fits it in one window.
const GUARD_TOKENS: usize = 128;

#[derive(Debug, Clone, Args)]
pub struct TextLoadArgs {
    /// Texts of each kind (short, passage) sent to `/v1/embeddings`; 0 skips it.
    #[arg(long, env = "RAGD_BENCH_EMBED_TEXTS", default_value_t = 1024)]
    pub embed_texts: usize,
    /// Texts per embeddings request.
    #[arg(long, env = "RAGD_BENCH_EMBED_BATCH", default_value_t = 32)]
    pub embed_batch: usize,
    /// Clients sending embeddings requests at once.
    #[arg(long, env = "RAGD_BENCH_EMBED_CONCURRENCY", default_value_t = 4)]
    pub embed_concurrency: usize,
    /// One-window texts sent to `/v1/moderations` (the guard); 0 skips it.
    #[arg(long, env = "RAGD_BENCH_GUARD_TEXTS", default_value_t = 256)]
    pub guard_texts: usize,
    /// Texts per moderations request (ragd scores at most
    /// `--max-guard-windows`, 32 by default, per request).
    #[arg(long, env = "RAGD_BENCH_GUARD_BATCH", default_value_t = 16)]
    pub guard_batch: usize,
    /// Clients sending moderations requests at once.
    #[arg(long, env = "RAGD_BENCH_GUARD_CONCURRENCY", default_value_t = 4)]
    pub guard_concurrency: usize,
}

/// `n` texts of about `tokens` tokens in batches of `batch`; `tag` and the
/// clock keep them apart from any other run's (no cache serves them).
fn batches(tag: &str, n: usize, tokens: usize, batch: usize) -> Vec<Vec<String>> {
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() % 1_000_000);
    let texts: Vec<String> = (0..n)
        .map(|i| prompt(&format!("{run}-{tag}{i}"), tokens))
        .collect();
    texts.chunks(batch.max(1)).map(<[String]>::to_vec).collect()
}

/// `tokens`, capped to `fraction` of the model's input where it says.
fn fitted(tokens: usize, model: &ServedModel, fraction: f64) -> usize {
    let cap = model
        .max_input_tokens
        .map_or(tokens, |m| (m as f64 * fraction) as usize);
    tokens.min(cap).max(4)
}

impl TextLoadArgs {
    /// Requests the parts will send (warm-ups included), for the progress bar.
    pub fn requests(&self, models: &ServerModels) -> usize {
        let n = |texts: usize, batch: usize| texts.div_ceil(batch.max(1)) + 1;
        let embed = models.embedder.is_some() && self.embed_texts > 0;
        let guard = models.guard.is_some() && self.guard_texts > 0;
        usize::from(embed) * 2 * n(self.embed_texts, self.embed_batch)
            + usize::from(guard) * n(self.guard_texts, self.guard_batch)
    }

    /// Embeddings (short, then passages) and the guard, or why each was skipped.
    pub async fn run(
        &self,
        endpoint: &Endpoint,
        models: &ServerModels,
        bar: &ProgressBar,
    ) -> (Part<Vec<TextLoad>>, Part<TextLoad>) {
        let embeddings = match (&models.embedder, self.embed_texts) {
            (_, 0) => Err("--embed-texts 0".to_string()),
            (None, _) => Err("the server lists no embedder (`kind: embedder` in /v1/models)".into()),
            (Some(m), n) => {
                let mut loads = Vec::new();
                for (kind, tokens) in [("short", SHORT_TOKENS), ("passage", PASSAGE_TOKENS)] {
                    let tokens = fitted(tokens, m, 0.6);
                    bar.set_message(format!("embeddings, {kind}"));
                    let load = self.load(endpoint, "/v1/embeddings", m, "data", self.embed_concurrency);
                    let result = load.run(batches(kind, n, tokens, self.embed_batch), bar).await;
                    loads.push(TextLoad {
                        kind,
                        approx_tokens: tokens,
                        batch: self.embed_batch,
                        concurrency: self.embed_concurrency,
                        result,
                    });
                }
                Ok(loads)
            }
        };
        let guard = match (&models.guard, self.guard_texts) {
            (_, 0) => Err("--guard-texts 0".to_string()),
            (None, _) => Err("the server lists no guard (`kind: guard` in /v1/models)".into()),
            (Some(m), n) => {
                let tokens = fitted(GUARD_TOKENS, m, 1.0 / 3.0);
                bar.set_message("guard");
                let load = self.load(endpoint, "/v1/moderations", m, "results", self.guard_concurrency);
                let result = load.run(batches("guard", n, tokens, self.guard_batch), bar).await;
                Ok(TextLoad {
                    kind: "window",
                    approx_tokens: tokens,
                    batch: self.guard_batch,
                    concurrency: self.guard_concurrency,
                    result,
                })
            }
        };
        (embeddings, guard)
    }

    fn load<'a>(
        &self,
        endpoint: &'a Endpoint,
        path: &'static str,
        model: &'a ServedModel,
        results_field: &'static str,
        concurrency: usize,
    ) -> BatchLoad<'a> {
        BatchLoad {
            endpoint,
            path,
            model: &model.id,
            results_field,
            concurrency,
        }
    }
}
