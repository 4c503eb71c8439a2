//! Semantic response cache for chat completions (opt-in:
//! `--semantic-cache-threshold`).
//!
//! A cacheable chat request (see [`super::key::cacheable`]) whose
//! question (the last user message) embeds within the threshold's cosine
//! similarity of an earlier one gets that earlier answer, skipping
//! retrieval and generation. Only questions asked in the same context
//! match: the same tenant, model, settings, other messages and retrieval
//! request (collection, top_k, filter) form a bucket, and only entries of
//! the request's bucket are compared. The bucket also holds the version of
//! the collection retrieved from, which changes with every write and
//! delete and differs for a deleted and re-created collection: an answer is
//! never served from data that has changed or gone. A question longer than
//! the embedder's window is never cached (the embedder would only see its
//! start, so two questions sharing a long preamble would look alike). A
//! paraphrase can still need a different answer, so it is off by default;
//! the exact cache needs no such care.
//!
//! Entries are weighed in bytes (answer JSON plus vector), within
//! `max_bytes` in all and `max_bytes / ENTRY_SHARE` each.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, Registry};
use ragd_index::CollectionVersion;
use ragd_models::llama::ChatMessage;
use serde_json::Value;

use super::key::{deserialize, digest, settings_bytes, ENTRY_SHARE};
use super::lookups::register_lookups;
use crate::embedding::{embed, Input};
use crate::error::ServiceError;
use crate::generation::GenSettings;
use crate::guard_policy::GuardPolicy;
use crate::models::ModelHandle;
use crate::rag::RagRequest;
use crate::tenant::Tenant;

/// How close and how many.
#[derive(Debug, Clone, Copy)]
pub struct SemanticConfig {
    /// Cosine similarity at or above which two questions match.
    pub threshold: f32,
    /// Most entries over all tenants (oldest dropped first).
    pub max_entries: usize,
    /// Most bytes over all tenants (answer JSON and vectors; oldest
    /// dropped first).
    pub max_bytes: usize,
    pub ttl: Duration,
}

pub struct SemanticCache {
    config: SemanticConfig,
    entries: Mutex<Entries>,
    lookups: IntCounterVec,
}

#[derive(Default)]
struct Entries {
    queue: VecDeque<Entry>,
    bytes: usize,
}

struct Entry {
    bucket: [u8; 32],
    /// Unit length.
    vector: Vec<f32>,
    /// The answer's JSON text.
    body: Arc<str>,
    at: Instant,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.body.len() + self.vector.len() * std::mem::size_of::<f32>() + std::mem::size_of::<Self>()
    }
}

/// A request's question, embedded, with its bucket.
pub struct SemanticQuery {
    bucket: [u8; 32],
    vector: Vec<f32>,
}

/// What decides a request's bucket: everything but the question's text.
pub struct BucketParts<'a> {
    pub tenant: &'a Tenant,
    pub model: &'a str,
    pub settings: &'a GenSettings,
    pub messages: &'a [ChatMessage],
    /// Index of the question in `messages`.
    pub question: usize,
    pub rag: Option<&'a RagRequest>,
    /// Version of the collection `rag` names (see `Collection::version`).
    pub collection_version: Option<CollectionVersion>,
    /// The tenant's guard policy, when it screens anything: an answer made
    /// under another policy may show other flags, chunks or nothing.
    pub guard_policy: Option<&'a GuardPolicy>,
}

impl SemanticCache {
    pub fn new(config: SemanticConfig, registry: &Registry) -> prometheus::Result<Self> {
        let lookups = register_lookups(
            "ragd_semantic_cache_lookups_total",
            "Semantic cache lookups of cacheable chat requests, by result (hit, miss)",
            registry,
        )?;
        Ok(Self {
            config,
            entries: Mutex::new(Entries::default()),
            lookups,
        })
    }

    /// Embeds the question. `None` when it is longer than the embedder's
    /// window: the embedder would truncate it, so it cannot stand for the
    /// whole question.
    pub async fn query(
        &self,
        embedder: &ModelHandle,
        parts: BucketParts<'_>,
    ) -> Result<Option<SemanticQuery>, ServiceError> {
        let question = parts.messages[parts.question].content.clone();
        let tokenizer = embedder.tokenizer.clone();
        let ids = tokio::task::spawn_blocking(move || tokenizer.encode(&question))
            .await
            .map_err(|e| ServiceError::task("tokenizer", e))??;
        if ids.len() > embedder.info.framing.content_len() {
            return Ok(None);
        }
        let (mut vectors, _) = embed(embedder, vec![Input::Tokens(ids)]).await?;
        let Some(mut vector) = vectors.pop() else {
            return Ok(None);
        };
        let norm = ragd_kernels::vector::dot(&vector, &vector).sqrt();
        if norm == 0.0 {
            return Ok(None);
        }
        vector.iter_mut().for_each(|x| *x /= norm);
        Ok(Some(SemanticQuery {
            bucket: bucket(&parts),
            vector,
        }))
    }

    /// The answer to the most similar earlier question of the bucket, if
    /// it is similar enough and fresh (counted as a hit or a miss).
    pub fn get(&self, query: &SemanticQuery) -> Option<Value> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let best = entries
            .queue
            .iter()
            .filter(|e| e.bucket == query.bucket && e.at.elapsed() < self.config.ttl)
            .map(|e| (ragd_kernels::vector::dot(&e.vector, &query.vector), e))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .filter(|(similarity, _)| *similarity >= self.config.threshold)
            .map(|(_, e)| e.body.clone());
        drop(entries);
        let best = best.and_then(|text| deserialize(&text));
        let result = if best.is_some() { "hit" } else { "miss" };
        self.lookups.with_label_values(&[result]).inc();
        best
    }

    /// Caches `body` for the query's question, unless it is over the
    /// per-entry cap; the oldest entries make room.
    pub fn put(&self, query: SemanticQuery, body: &Value) {
        let entry = Entry {
            bucket: query.bucket,
            vector: query.vector,
            body: Arc::from(body.to_string()),
            at: Instant::now(),
        };
        let size = entry.bytes();
        if size > self.config.max_bytes / ENTRY_SHARE as usize {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        while entries.queue.front().is_some_and(|e| {
            e.at.elapsed() >= self.config.ttl
                || entries.queue.len() >= self.config.max_entries
                || entries.bytes + size > self.config.max_bytes
        }) {
            if let Some(old) = entries.queue.pop_front() {
                entries.bytes -= old.bytes();
            }
        }
        entries.bytes += size;
        entries.queue.push_back(entry);
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

fn bucket(parts: &BucketParts<'_>) -> [u8; 32] {
    let mut context = Vec::new();
    for (i, m) in parts.messages.iter().enumerate() {
        let content = if i == parts.question { "" } else { &m.content };
        context.extend_from_slice(format!("{}\0{}\0{}\0", i, m.role, content).as_bytes());
    }
    let rag = parts
        .rag
        .map(|r| {
            let ranking = r.ranking().ok();
            let rerank = (r.rerank, r.candidates);
            serde_json::json!([
                r.collection,
                r.top_k,
                r.filter,
                ranking,
                parts.collection_version,
                rerank
            ])
            .to_string()
        })
        .unwrap_or_default();
    digest(&[
        parts.tenant.as_str().as_bytes(),
        parts.model.as_bytes(),
        &settings_bytes(parts.settings),
        &context,
        rag.as_bytes(),
        serde_json::to_string(&parts.guard_policy)
            .unwrap_or_default()
            .as_bytes(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_entries: usize) -> SemanticCache {
        cache_of(max_entries, 1 << 20)
    }

    fn cache_of(max_entries: usize, max_bytes: usize) -> SemanticCache {
        let config = SemanticConfig {
            threshold: 0.9,
            max_entries,
            max_bytes,
            ttl: Duration::from_secs(60),
        };
        SemanticCache::new(config, &Registry::new()).unwrap()
    }

    fn query(bucket: u8, v: &[f32]) -> SemanticQuery {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        SemanticQuery {
            bucket: [bucket; 32],
            vector: v.iter().map(|x| x / n).collect(),
        }
    }

    #[test]
    fn a_close_question_of_the_same_bucket_hits_and_others_miss() {
        let c = cache(8);
        c.put(query(1, &[1.0, 0.0, 0.0]), &Value::from("paris"));
        c.put(query(1, &[0.0, 1.0, 0.0]), &Value::from("rome"));
        assert_eq!(c.get(&query(1, &[1.0, 0.1, 0.0])), Some(Value::from("paris")));
        assert_eq!(c.get(&query(1, &[0.1, 1.0, 0.0])), Some(Value::from("rome")));
        assert_eq!(
            c.get(&query(1, &[1.0, 1.0, 0.0])),
            None,
            "cosine 0.71 is below 0.9"
        );
        assert_eq!(c.get(&query(2, &[1.0, 0.0, 0.0])), None, "another bucket");
        let hits = c.lookups.with_label_values(&["hit"]).get();
        assert_eq!((hits, c.lookups.with_label_values(&["miss"]).get()), (2, 2));
    }

    #[test]
    fn the_oldest_entries_go_first() {
        let c = cache(2);
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            let mut v = [0.0; 3];
            v[i] = 1.0;
            c.put(query(1, &v), &Value::from(name));
        }
        assert_eq!(c.get(&query(1, &[1.0, 0.0, 0.0])), None);
        assert_eq!(c.get(&query(1, &[0.0, 0.0, 1.0])), Some(Value::from("c")));
    }

    #[test]
    fn the_bucket_ignores_only_the_question_text() {
        let (tenant, other) = (Tenant::new("acme"), Tenant::new("globex"));
        let settings = crate::generation::SamplingFields::default()
            .validate(None, None)
            .unwrap();
        let messages = |q: &str| {
            vec![
                ChatMessage::new("system", "Be brief."),
                ChatMessage::new("user", q),
            ]
        };
        let (a, b) = (
            messages("What is the capital of France?"),
            messages("Capital of France?"),
        );
        let parts = |tenant, messages| BucketParts {
            tenant,
            model: "m",
            settings: &settings,
            messages,
            question: 1,
            rag: None,
            collection_version: None,
            guard_policy: None,
        };
        assert_eq!(bucket(&parts(&tenant, &a)), bucket(&parts(&tenant, &b)));
        assert_ne!(bucket(&parts(&tenant, &a)), bucket(&parts(&other, &a)));
        let mut c = a.clone();
        c[0].content = "Be verbose.".into();
        assert_ne!(bucket(&parts(&tenant, &a)), bucket(&parts(&tenant, &c)));
    }

    #[test]
    fn entries_are_weighed_in_bytes_and_huge_answers_are_not_kept() {
        // 16 KiB in all: 1 KiB a entry at most.
        let c = cache_of(1000, 16 << 10);
        let huge = Value::from("x".repeat(2000));
        c.put(query(1, &[1.0, 0.0, 0.0]), &huge);
        assert_eq!(c.bytes(), 0, "over the per-entry cap");
        assert_eq!(c.get(&query(1, &[1.0, 0.0, 0.0])), None);
        let answer = Value::from("y".repeat(500));
        for i in 0..100 {
            let mut v = [0.0; 3];
            v[i % 3] = 1.0 + i as f32;
            c.put(query(1, &v), &answer);
            assert!(c.bytes() <= 16 << 10, "{} bytes held", c.bytes());
        }
        assert!(c.bytes() > 8 << 10, "the budget is used, {} bytes", c.bytes());
    }

    #[test]
    fn the_bucket_changes_with_the_collection_version() {
        let tenant = Tenant::new("acme");
        let settings = crate::generation::SamplingFields::default()
            .validate(None, None)
            .unwrap();
        let messages = vec![ChatMessage::new("user", "q")];
        let rag: RagRequest = serde_json::from_value(serde_json::json!({"collection": "docs"})).unwrap();
        let version = |seq| CollectionVersion { incarnation: 1, seq };
        let parts = |version| BucketParts {
            tenant: &tenant,
            model: "m",
            settings: &settings,
            messages: &messages,
            question: 0,
            rag: Some(&rag),
            collection_version: Some(version),
            guard_policy: None,
        };
        assert_eq!(bucket(&parts(version(7))), bucket(&parts(version(7))));
        assert_ne!(bucket(&parts(version(7))), bucket(&parts(version(8))));
    }
}
