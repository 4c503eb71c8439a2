//! Throughput of a batched, non-streaming endpoint (`/v1/embeddings`,
//! `/v1/moderations`): request bodies of several texts each, sent by a few
//! clients back to back after one unmeasured warm-up request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use indicatif::ProgressBar;
use serde_json::{json, Value};

use crate::http::{self, Endpoint, ErrorCause, ErrorTally, RequestError};

/// One batched load: `POST path` with `{"model", "input": [texts]}`,
/// whose answer lists one result per text under `results_field`.
pub struct BatchLoad<'a> {
    pub endpoint: &'a Endpoint,
    pub path: &'static str,
    pub model: &'a str,
    pub results_field: &'static str,
    pub concurrency: usize,
}

/// What one batched load measured.
#[derive(Debug, Clone, Default)]
pub struct Throughput {
    /// Texts answered, and requests sent (failed ones included).
    pub texts: usize,
    pub requests: usize,
    pub wall_s: f64,
    /// `usage.prompt_tokens` over the answered requests, where reported.
    pub prompt_tokens: Option<u64>,
    pub errors: ErrorTally,
    pub retries: u64,
}

impl Throughput {
    pub fn texts_per_second(&self) -> f64 {
        self.texts as f64 / self.wall_s.max(1e-9)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "texts": self.texts,
            "requests": self.requests,
            "wall_s": self.wall_s,
            "texts_per_second": self.texts_per_second(),
            "prompt_tokens": self.prompt_tokens,
            "errors": self.errors.total(),
            "errors_by_cause": self.errors.to_json(),
            "retries": self.retries,
        })
    }
}

impl BatchLoad<'_> {
    /// Sends `batches` (the first once more as the warm-up); `progress`
    /// advances by one per request.
    pub async fn run(&self, batches: Vec<Vec<String>>, progress: &ProgressBar) -> Throughput {
        if let Some(first) = batches.first() {
            if let Err(e) = self.one(first).await {
                progress.suspend(|| eprintln!("{} warm-up failed: {e}", self.path));
            }
        }
        let batches = Arc::new(batches);
        let next = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        let results: Vec<_> = futures::future::join_all((0..self.concurrency.max(1)).map(|_| {
            let (batches, next) = (batches.clone(), next.clone());
            async move {
                let mut out = Vec::new();
                while let Some(batch) = batches.get(next.fetch_add(1, Ordering::Relaxed)) {
                    out.push(self.one(batch).await);
                    progress.inc(1);
                }
                out
            }
        }))
        .await
        .into_iter()
        .flatten()
        .collect();
        let mut t = Throughput {
            requests: results.len(),
            wall_s: t0.elapsed().as_secs_f64(),
            ..Throughput::default()
        };
        for r in results {
            match r {
                Ok((texts, tokens, retries)) => {
                    t.texts += texts;
                    t.retries += u64::from(retries);
                    if let Some(n) = tokens {
                        t.prompt_tokens = Some(t.prompt_tokens.unwrap_or(0) + n);
                    }
                }
                Err(e) => t.errors.add(&e),
            }
        }
        t
    }

    /// One request: texts answered, prompt tokens reported, retries.
    async fn one(&self, texts: &[String]) -> Result<(usize, Option<u64>, u32), RequestError> {
        let body = json!({"model": self.model, "input": texts});
        let (answer, retries) = http::post_json(self.endpoint, self.path, &body).await?;
        let n = answer[self.results_field].as_array().map_or(0, Vec::len);
        if n != texts.len() {
            let detail = format!("{} results for {} inputs", n, texts.len());
            return Err(RequestError::new(ErrorCause::BadResponse, detail));
        }
        Ok((n, answer["usage"]["prompt_tokens"].as_u64(), retries))
    }
}
