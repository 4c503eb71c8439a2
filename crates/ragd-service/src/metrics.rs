//! Metrics of the service layer: guard decisions and the knowledge base.
//! (HTTP metrics are the server's; model queues' are the engine's.)

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Guard decisions on the chat path, by stage (`input`, `context`).
#[derive(Clone)]
pub struct GuardMetrics {
    /// Requests refused (input), retrieved chunks left out or requests
    /// refused for them (context), answers withheld (output).
    pub blocks: IntCounterVec,
    /// Flagged texts a `flag` policy let through, by stage.
    pub flags: IntCounterVec,
}

impl GuardMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let blocks = IntCounterVec::new(
            Opts::new(
                "ragd_guard_blocks_total",
                "Texts the injection guard stopped: chat requests refused (stage input), retrieved chunks left out or refused (stage context), answers withheld (stage output)",
            ),
            &["stage"],
        )?;
        // Both stages exist from the start, at 0: a rate over them needs no
        // first block.
        let flags = IntCounterVec::new(
            Opts::new(
                "ragd_guard_flags_total",
                "Texts the injection guard flagged that a tenant's `flag` policy let through, by stage",
            ),
            &["stage"],
        )?;
        for stage in ["input", "context", "output"] {
            blocks.with_label_values(&[stage]);
            flags.with_label_values(&[stage]);
        }
        registry.register(Box::new(blocks.clone()))?;
        registry.register(Box::new(flags.clone()))?;
        Ok(Self { blocks, flags })
    }
}

/// Knowledge-base metrics. Totals over the whole store: never a tenant or
/// collection label (unbounded, and it would leak tenant names).
#[derive(Clone)]
pub struct IndexMetrics {
    /// Time a search spends in the index (the query's embedding is in the
    /// embedder's own metrics).
    pub search_seconds: Histogram,
    /// Cosine similarity of the best hit of each search that found one.
    pub top_score: Histogram,
    /// Documents and chunks stored, refreshed at each scrape.
    pub documents: IntGauge,
    pub chunks: IntGauge,
    pub collections: IntGauge,
    /// Collections that failed to load and are out of service.
    pub quarantined: IntGauge,
    pub ingested_documents: IntCounter,
}

impl IndexMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let search_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "ragd_search_latency_seconds",
                "Time a collection search spends in the index",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 2.0, 16)?),
        )?;
        let top_score = Histogram::with_opts(
            HistogramOpts::new(
                "ragd_retrieval_top_score",
                "Cosine similarity of the best hit of each search",
            )
            .buckets(score_buckets()),
        )?;
        let documents = IntGauge::new("ragd_documents", "Documents in the knowledge base (all tenants)")?;
        let chunks = IntGauge::new("ragd_chunks", "Chunks in the knowledge base (all tenants)")?;
        let collections = IntGauge::new(
            "ragd_collections",
            "Collections in the knowledge base (all tenants)",
        )?;
        let quarantined = IntGauge::new(
            "ragd_quarantined_collections",
            "Collections whose files failed to load, kept for inspection and out of service (all tenants)",
        )?;
        let ingested_documents = IntCounter::new(
            "ragd_ingested_documents_total",
            "Documents written (inserted or replaced) through the collections API",
        )?;
        registry.register(Box::new(search_seconds.clone()))?;
        registry.register(Box::new(top_score.clone()))?;
        registry.register(Box::new(documents.clone()))?;
        registry.register(Box::new(chunks.clone()))?;
        registry.register(Box::new(collections.clone()))?;
        registry.register(Box::new(quarantined.clone()))?;
        registry.register(Box::new(ingested_documents.clone()))?;
        Ok(Self {
            search_seconds,
            top_score,
            documents,
            chunks,
            collections,
            quarantined,
            ingested_documents,
        })
    }
}

/// 0, 0.05, ..., 1: each bound the double nearest its decimal, so the `le`
/// labels read `0.3`, not `0.30000000000000004` (`linear_buckets`
/// multiplies), and a query can select `le="0.3"`.
fn score_buckets() -> Vec<f64> {
    (0..=20).map(|i| f64::from(i) / 20.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_buckets_print_as_their_decimals() {
        let labels: Vec<String> = score_buckets().iter().map(f64::to_string).collect();
        assert_eq!(labels.len(), 21);
        assert_eq!(labels[0], "0");
        assert_eq!(labels[6], "0.3");
        assert_eq!(labels[7], "0.35");
        assert_eq!(labels[20], "1");
        assert!(labels.iter().all(|l| l.len() <= 4), "{labels:?}");
    }
}
