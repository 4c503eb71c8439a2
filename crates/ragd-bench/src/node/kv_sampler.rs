//! KV cache use while a concurrency level runs: `GET /metrics` polled a few
//! times a second. ragd exports `ragd_kv_blocks_used` / `_capacity` and
//! `ragd_running_sequences`; llama-server (with `--metrics`) and vLLM a
//! usage ratio. Servers without `/metrics` give no figure.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use super::prometheus::gauge;
use crate::http::Endpoint;

/// How often `/metrics` is read during a level.
const PERIOD: Duration = Duration::from_millis(200);

/// KV cache use gauges of other servers, each a fraction 0..1 (vLLM's
/// `_perc` ones too).
const PEER_RATIOS: [&str; 3] = [
    "llamacpp:kv_cache_usage_ratio",
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
];

/// KV cache use over one level.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KvUse {
    /// Highest and mean fraction of the KV cache in use.
    pub peak_fraction: f64,
    pub mean_fraction: f64,
    /// ragd only: blocks in use at the peak, and in all.
    pub peak_blocks: Option<u64>,
    pub capacity_blocks: Option<u64>,
    /// ragd only: most sequences running at once.
    pub peak_running: Option<u64>,
    pub samples: usize,
}

/// One reading of `/metrics`.
#[derive(Debug, PartialEq)]
struct Reading {
    /// Fraction of the KV cache in use.
    fraction: f64,
    /// ragd only: blocks used and in all, sequences running.
    blocks: Option<(f64, f64)>,
    running: Option<f64>,
}

fn read(text: &str, model: &str) -> Option<Reading> {
    let used = gauge(text, "ragd_kv_blocks_used", Some(model));
    let capacity = gauge(text, "ragd_kv_blocks_capacity", Some(model)).filter(|&c| c > 0.0);
    if let (Some(u), Some(c)) = (used, capacity) {
        return Some(Reading {
            fraction: u / c,
            blocks: Some((u, c)),
            running: gauge(text, "ragd_running_sequences", Some(model)),
        });
    }
    PEER_RATIOS.iter().find_map(|name| {
        gauge(text, name, None).map(|fraction| Reading {
            fraction,
            blocks: None,
            running: None,
        })
    })
}

/// A running sampler; [`stop`](Self::stop) ends it and gives its figures.
pub struct KvSampler {
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<Option<KvUse>>,
}

impl KvSampler {
    pub fn start(endpoint: Endpoint, model: String) -> Self {
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(sample(endpoint, model, stop.clone()));
        Self { stop, task }
    }

    /// `None` when the server exports no KV figure.
    pub async fn stop(self) -> Option<KvUse> {
        self.stop.notify_one();
        self.task.await.ok().flatten()
    }
}

async fn sample(endpoint: Endpoint, model: String, stop: Arc<Notify>) -> Option<KvUse> {
    let mut kv = KvUse::default();
    let mut sum = 0.0;
    loop {
        let text = match endpoint.get("/metrics").send().await {
            Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
            _ => String::new(),
        };
        match read(&text, &model) {
            Some(Reading {
                fraction,
                blocks,
                running,
            }) => {
                kv.samples += 1;
                sum += fraction;
                if fraction >= kv.peak_fraction {
                    kv.peak_fraction = fraction;
                    kv.peak_blocks = blocks.map(|(u, _)| u as u64);
                }
                kv.capacity_blocks = blocks.map(|(_, c)| c as u64);
                if let Some(r) = running {
                    kv.peak_running = Some(kv.peak_running.unwrap_or(0).max(r as u64));
                }
            }
            // Nothing to read at the first try: nothing will come.
            None if kv.samples == 0 => return None,
            None => {}
        }
        tokio::select! {
            _ = stop.notified() => break,
            _ = tokio::time::sleep(PERIOD) => {}
        }
    }
    kv.mean_fraction = sum / kv.samples.max(1) as f64;
    Some(kv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ragd_blocks_else_a_peer_ratio() {
        let ragd = "ragd_kv_blocks_used{model=\"m\"} 64\nragd_kv_blocks_capacity{model=\"m\"} 256\n\
                    ragd_running_sequences{model=\"m\"} 4\n";
        let ratio = |fraction| {
            Some(Reading {
                fraction,
                blocks: None,
                running: None,
            })
        };
        let blocks = Reading {
            fraction: 0.25,
            blocks: Some((64.0, 256.0)),
            running: Some(4.0),
        };
        assert_eq!(read(ragd, "m"), Some(blocks));
        assert_eq!(read("llamacpp:kv_cache_usage_ratio 0.5\n", "m"), ratio(0.5));
        assert_eq!(
            read("vllm:gpu_cache_usage_perc{model_name=\"x\"} 0.1\n", "m"),
            ratio(0.1)
        );
        assert_eq!(read("", "m"), None);
    }
}
