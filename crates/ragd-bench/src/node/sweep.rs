//! The generation sweep of one server: `ragd bench generate`'s load at
//! each concurrency level in turn, with the KV cache use read from
//! `/metrics` meanwhile, stopped at the first level the server refuses
//! (429 or 503: it admits no more).

use std::sync::Arc;

use indicatif::ProgressBar;
use serde_json::{json, Value};

use super::kv_sampler::{KvSampler, KvUse};
use super::prometheus::gauge;
use crate::generate::load::{run_level, RequestShape, Target};
use crate::generate::LevelReport;
use crate::http::Endpoint;

/// One level: the load's report and the KV cache use meanwhile.
#[derive(Debug, Clone)]
pub struct LevelRun {
    pub load: LevelReport,
    pub kv: Option<KvUse>,
}

/// A server's sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub label: String,
    pub url: String,
    pub model: String,
    pub levels: Vec<LevelRun>,
    /// The level at which the server refused requests (the sweep stopped there).
    pub refused_at: Option<usize>,
    /// Levels not run because of the refusal.
    pub skipped: Vec<usize>,
    /// ragd's `ragd_queue_capacity`: most requests that may wait.
    pub queue_capacity: Option<u64>,
}

impl Sweep {
    pub fn level(&self, concurrency: usize) -> Option<&LevelRun> {
        self.levels.iter().find(|l| l.load.concurrency == concurrency)
    }

    pub fn to_json(&self) -> Value {
        let levels: Vec<Value> = (self.levels.iter())
            .map(|l| {
                let mut v = l.load.to_json();
                v["kv_cache"] = serde_json::to_value(&l.kv).unwrap_or(Value::Null);
                v
            })
            .collect();
        json!({
            "label": self.label,
            "url": self.url,
            "model": self.model,
            "queue_capacity": self.queue_capacity,
            "refused_at": self.refused_at,
            "skipped_levels": self.skipped,
            "levels": levels,
        })
    }
}

/// Runs `levels` against `endpoint`; `progress` advances per request.
pub async fn sweep(
    endpoint: Endpoint,
    label: String,
    model: String,
    shape: RequestShape,
    levels: &[usize],
    per_client: usize,
    progress: &ProgressBar,
) -> Sweep {
    let queue_capacity = match endpoint.get("/metrics").send().await {
        Ok(r) if r.status().is_success() => {
            let text = r.text().await.unwrap_or_default();
            gauge(&text, "ragd_queue_capacity", Some(&model)).map(|c| c as u64)
        }
        _ => None,
    };
    let mut out = Sweep {
        label,
        url: endpoint.url.clone(),
        model: model.clone(),
        levels: Vec::new(),
        refused_at: None,
        skipped: Vec::new(),
        queue_capacity,
    };
    let target = Arc::new(Target::new(endpoint.clone(), model.clone(), shape));
    for &c in levels {
        if out.refused_at.is_some() {
            out.skipped.push(c);
            continue;
        }
        progress.set_message(format!("generation {} x{c}", out.label));
        let sampler = KvSampler::start(endpoint.clone(), model.clone());
        let load = run_level(target.clone(), c, per_client, progress).await;
        let kv = sampler.stop().await;
        if load.errors.refused {
            out.refused_at = Some(c);
        }
        out.levels.push(LevelRun { load, kv });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_server::{endpoint, start};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_level_the_server_refuses_ends_the_sweep() {
        let busy = "HTTP/1.1 429 Too Many Requests\r\ncontent-length: 10\r\n\r\nqueue full".to_string();
        let (addr, _) = start(vec![Some(busy)]).await;
        let shape = RequestShape::completions(8, 2);
        let bar = ProgressBar::hidden();
        let s = sweep(
            endpoint(addr),
            "busy".into(),
            "m".into(),
            shape,
            &[2, 4, 8],
            1,
            &bar,
        )
        .await;
        assert_eq!((s.refused_at, s.skipped.clone()), (Some(2), vec![4, 8]));
        assert_eq!(s.levels.len(), 1);
        let errors = &s.levels[0].load.errors;
        assert_eq!((errors.total(), errors.summary()), (2, "http_429: 2".to_string()));
        assert!(s.levels[0].kv.is_none() && s.queue_capacity.is_none());
    }
}
