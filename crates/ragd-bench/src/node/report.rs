//! Everything `ragd bench node` measured, and its JSON (`--json FILE`).

use serde::Serialize;
use serde_json::{json, Value};

use super::batch_load::Throughput;
use super::server::ServerModels;
use super::sweep::Sweep;
use super::system::NodeInfo;

/// The load of one kind of text on a batched endpoint, and its figures.
#[derive(Debug, Clone)]
pub struct TextLoad {
    /// `short`, `passage` or `window`.
    pub kind: &'static str,
    /// About how many tokens each text has.
    pub approx_tokens: usize,
    pub batch: usize,
    pub concurrency: usize,
    pub result: Throughput,
}

impl TextLoad {
    fn to_json(&self) -> Value {
        let mut v = self.result.to_json();
        v["kind"] = json!(self.kind);
        v["approx_tokens_per_text"] = json!(self.approx_tokens);
        v["batch"] = json!(self.batch);
        v["concurrency"] = json!(self.concurrency);
        v
    }
}

/// What was asked of every generation request.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationSettings {
    pub prompt_tokens: usize,
    pub max_tokens: usize,
    pub requests_per_client: usize,
}

/// A part of the benchmark that ran, or why it did not.
pub type Part<T> = Result<T, String>;

#[derive(Debug, Clone)]
pub struct NodeReport {
    pub node: NodeInfo,
    pub url: String,
    pub models: ServerModels,
    /// Short and passage-length texts through `/v1/embeddings`.
    pub embeddings: Part<Vec<TextLoad>>,
    /// One-window texts through `/v1/moderations` (each a guard window).
    pub guard: Part<TextLoad>,
    pub settings: GenerationSettings,
    pub generation: Sweep,
    /// The same sweep against `--compare`.
    pub compare: Option<Sweep>,
}

/// The server under test over the peer at one concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub concurrency: usize,
    /// Output tok/s: above 1, the server under test is faster.
    pub tokens_per_second: Option<f64>,
    /// Latencies: below 1, the server under test is faster.
    pub ttft_p50: Option<f64>,
    pub ttft_p99: Option<f64>,
    pub itl_p50: Option<f64>,
    pub itl_p99: Option<f64>,
}

/// `a / b` where both are measured and `b` is above 0.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

impl NodeReport {
    /// Per level both sweeps ran: `generation` over `compare`.
    pub fn ratios(&self) -> Vec<Ratio> {
        let Some(peer) = &self.compare else {
            return Vec::new();
        };
        (self.generation.levels.iter())
            .filter_map(|l| Some((&l.load, &peer.level(l.load.concurrency)?.load)))
            .map(|(a, b)| {
                let tps =
                    |l: &crate::generate::LevelReport| (l.output_tokens > 0).then(|| l.tokens_per_second());
                Ratio {
                    concurrency: a.concurrency,
                    tokens_per_second: ratio(tps(a), tps(b)),
                    ttft_p50: ratio(a.ttft_ms[0], b.ttft_ms[0]),
                    ttft_p99: ratio(a.ttft_ms[1], b.ttft_ms[1]),
                    itl_p50: ratio(a.itl_ms[0], b.itl_ms[0]),
                    itl_p99: ratio(a.itl_ms[1], b.itl_ms[1]),
                }
            })
            .collect()
    }

    pub fn to_json(&self) -> Value {
        let part = |p: &Part<Value>| match p {
            Ok(v) => v.clone(),
            Err(why) => json!({"skipped": why}),
        };
        let embeddings = (self.embeddings.as_ref())
            .map(|loads| Value::from(loads.iter().map(TextLoad::to_json).collect::<Vec<_>>()))
            .map_err(Clone::clone);
        let guard = (self.guard.as_ref()).map(TextLoad::to_json).map_err(Clone::clone);
        json!({
            "node": self.node,
            "url": self.url,
            "models": self.models,
            "embeddings": part(&embeddings),
            "guard": part(&guard),
            "generation_settings": self.settings,
            "generation": self.generation.to_json(),
            "compare": self.compare.as_ref().map(Sweep::to_json),
            "ratios": self.ratios(),
        })
    }
}
