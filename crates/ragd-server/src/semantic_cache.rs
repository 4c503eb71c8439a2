//! Semantic response cache for chat completions (opt-in:
//! `--semantic-cache-threshold`).
//!
//! A cacheable chat request (see [`crate::response_cache::cacheable`]) whose
//! question (the last user message) embeds within the threshold's cosine
//! similarity of an earlier one gets that earlier answer, skipping
//! retrieval and generation. Only questions asked in the same context
//! match: the same tenant, model, settings, other messages and retrieval
//! request (collection, top_k, filter) form a bucket, and only entries of
//! the request's bucket are compared. A paraphrase can still need a
//! different answer, and a changed collection is only seen once entries
//! expire, so it is off by default; the exact cache needs no such care.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, Opts, Registry};
use ragd_models::llama::ChatMessage;
use serde_json::Value;

use crate::auth::Tenant;
use crate::error::ApiError;
use crate::generate::GenSettings;
use crate::input::Input;
use crate::models::ModelHandle;
use crate::rag::RagRequest;
use crate::response_cache::{digest, settings_bytes};
use crate::routes::embeddings::embed;

/// How close and how many.
#[derive(Debug, Clone, Copy)]
pub struct SemanticConfig {
    /// Cosine similarity at or above which two questions match.
    pub threshold: f32,
    /// Most entries over all tenants (oldest dropped first).
    pub max_entries: usize,
    pub ttl: Duration,
}

pub struct SemanticCache {
    config: SemanticConfig,
    entries: Mutex<VecDeque<Entry>>,
    lookups: IntCounterVec,
}

struct Entry {
    bucket: [u8; 32],
    /// Unit length.
    vector: Vec<f32>,
    body: Value,
    at: Instant,
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
}

impl SemanticCache {
    pub fn new(config: SemanticConfig, registry: &Registry) -> prometheus::Result<Self> {
        let lookups = IntCounterVec::new(
            Opts::new(
                "ragd_semantic_cache_lookups_total",
                "Semantic cache lookups of cacheable chat requests, by result (hit, miss)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(lookups.clone()))?;
        Ok(Self {
            config,
            entries: Mutex::new(VecDeque::new()),
            lookups,
        })
    }

    /// Embeds the question. `None` when it spans several embedder windows
    /// (too long to stand for one question).
    pub async fn query(
        &self,
        embedder: &ModelHandle,
        parts: BucketParts<'_>,
    ) -> Result<Option<SemanticQuery>, ApiError> {
        let question = parts.messages[parts.question].content.clone();
        let (mut vectors, _) = embed(embedder, vec![Input::Text(question)]).await?;
        if vectors.len() != 1 {
            return Ok(None);
        }
        let mut vector = vectors.remove(0);
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
            .iter()
            .filter(|e| e.bucket == query.bucket && e.at.elapsed() < self.config.ttl)
            .map(|e| (ragd_kernels::vector::dot(&e.vector, &query.vector), e))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .filter(|(similarity, _)| *similarity >= self.config.threshold)
            .map(|(_, e)| e.body.clone());
        let result = if best.is_some() { "hit" } else { "miss" };
        self.lookups.with_label_values(&[result]).inc();
        best
    }

    pub fn put(&self, query: SemanticQuery, body: &Value) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        while entries
            .front()
            .is_some_and(|e| e.at.elapsed() >= self.config.ttl || entries.len() >= self.config.max_entries)
        {
            entries.pop_front();
        }
        entries.push_back(Entry {
            bucket: query.bucket,
            vector: query.vector,
            body: body.clone(),
            at: Instant::now(),
        });
    }
}

fn bucket(parts: &BucketParts<'_>) -> [u8; 32] {
    let mut context = Vec::new();
    for (i, m) in parts.messages.iter().enumerate() {
        let content = if i == parts.question { "" } else { &m.content };
        context.extend_from_slice(format!("{}\0{}\0{}\0", i, m.role, content).as_bytes());
    }
    let rag = format!("{:?}", parts.rag);
    digest(&[
        parts.tenant.as_str().as_bytes(),
        parts.model.as_bytes(),
        &settings_bytes(parts.settings),
        &context,
        rag.as_bytes(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_entries: usize) -> SemanticCache {
        let config = SemanticConfig {
            threshold: 0.9,
            max_entries,
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
        let settings = crate::generate::SamplingFields::default()
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
        };
        assert_eq!(bucket(&parts(&tenant, &a)), bucket(&parts(&tenant, &b)));
        assert_ne!(bucket(&parts(&tenant, &a)), bucket(&parts(&other, &a)));
        let mut c = a.clone();
        c[0].content = "Be verbose.".into();
        assert_ne!(bucket(&parts(&tenant, &a)), bucket(&parts(&tenant, &c)));
    }
}
