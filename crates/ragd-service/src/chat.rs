//! The one chat pipeline: everything between a validated chat request and
//! the token ids the generator gets, in one fixed order:
//!
//! 1. at the same time: the guard scores the question (the last user
//!    message), and the semantic cache is asked, then the collection is
//!    searched (RAG);
//! 2. retrieved chunks the guard flags are left out (`blocked`);
//! 3. the RAG template puts the rest into the question;
//! 4. the chat template turns the messages into token ids (special tokens
//!    only from the template's own text);
//! 5. the exact cache is asked with those ids.
//!
//! A cache hit ends the pipeline with the earlier answer; otherwise the
//! caller generates and hands the answer back to [`ChatPipeline::remember`].

use std::sync::Arc;

use ragd_models::llama::ChatMessage;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use crate::cache::{self, CacheKey, CacheKeyParts, Lookup, ResponseCache, SemanticCache, SemanticQuery};
use crate::collections::{Collections, RetrievedChunk, SearchQuery};
use crate::error::ServiceError;
use crate::generation::output_check::OutputCheck;
use crate::generation::GenSettings;
use crate::guard::{Guard, GuardFlag};
use crate::guard_policy::GuardAction;
use crate::models::{GeneratorHandle, ModelHandle, RerankerHandle};
use crate::rag::{self, RagRequest, RagTemplate, Source};
use crate::rerank::rerank_chunks;
use crate::tenant::Tenant;
use crate::timing;
use crate::tools::Tools;

/// What the pipeline may use; `None` parts are off on this server. The
/// embedder and guard queue as the request's tenant.
pub struct ChatPipeline<'a> {
    pub embedder: Option<ModelHandle>,
    /// Set when chat requests are screened (`--guard-chat`).
    pub guard: Option<Guard>,
    pub collections: Option<&'a Collections>,
    pub rag_template: &'a RagTemplate,
    pub exact_cache: Option<&'a ResponseCache>,
    pub semantic_cache: Option<&'a SemanticCache>,
    /// The cross-encoder for `"rag": {"rerank": true}` (`--reranker`).
    pub reranker: Option<RerankerHandle>,
}

/// A validated chat request.
pub struct ChatRequest {
    pub tenant: Tenant,
    pub messages: Vec<ChatMessage>,
    pub rag: Option<RagRequest>,
    pub settings: GenSettings,
    /// The client asked not to be answered from a cache.
    pub client_bypass: bool,
    /// Functions the model may call (described in the system message).
    pub tools: Option<Tools>,
}

/// Which cache answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheHit {
    Exact,
    Semantic,
}

impl CacheHit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Semantic => "semantic",
        }
    }
}

/// A retrieved chunk the guard left out of the prompt.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BlockedChunk {
    pub document_id: String,
    pub chunk_id: u64,
    pub chunk_index: usize,
    pub injection_score: f32,
}

/// Where the pipeline ended.
pub enum Prepared {
    /// An earlier answer (its `id` and `created` are the earlier request's).
    Cached { body: Value, hit: CacheHit },
    /// The prompt to generate from (boxed: far larger than a cached body).
    Generate(Box<ChatJob>),
}

/// A prompt ready for the generator, with what the answer shows of its
/// retrieval and where to cache the answer.
pub struct ChatJob {
    pub prompt: Vec<u32>,
    /// Chunks in the prompt (RAG only).
    pub sources: Option<Vec<RetrievedChunk>>,
    /// Chunks the guard left out (RAG with screening only).
    pub blocked: Option<Vec<BlockedChunk>>,
    /// RAG only: the index of the message the retrieved context went
    /// into, and its new content (what a forwarded request sends instead).
    pub rag_question: Option<(usize, String)>,
    pub keys: CacheKeys,
    /// Flagged texts the tenant's policy let through (`guard_flags`).
    pub guard_flags: Vec<GuardFlag>,
    /// Checks of the answer (the tenant's policy screens answers).
    pub output: Option<OutputCheck>,
}

/// A request checked and augmented here for a generator elsewhere (an
/// upstream server): the guard and retrieval ran locally.
pub struct ForwardJob {
    pub sources: Option<Vec<RetrievedChunk>>,
    pub blocked: Option<Vec<BlockedChunk>>,
    /// As [`ChatJob::rag_question`].
    pub rag_question: Option<(usize, String)>,
    pub guard_flags: Vec<GuardFlag>,
}

/// Where a fresh answer goes: the exact cache (`None`: not cacheable or
/// off) and the semantic cache.
#[derive(Default)]
pub struct CacheKeys {
    exact: Option<CacheKey>,
    semantic: Option<SemanticQuery>,
}

impl CacheKeys {
    /// Whether the exact cache was asked (and missed).
    pub fn exact_missed(&self) -> bool {
        self.exact.is_some()
    }
}

/// The conversation after retrieval.
struct Augmented {
    messages: Vec<ChatMessage>,
    sources: Option<Vec<RetrievedChunk>>,
    blocked: Option<Vec<BlockedChunk>>,
    /// Flagged chunks kept by a `flag` policy.
    flags: Vec<GuardFlag>,
    /// The canary placed in the prompt (answers screened).
    canary: Option<String>,
}

impl Augmented {
    /// The message retrieval rewrote, and its new content.
    fn rag_question(&self, rag: bool) -> Option<(usize, String)> {
        let q = rag.then(|| rag::question_index(&self.messages).ok()).flatten()?;
        Some((q, self.messages[q].content.clone()))
    }
}

impl ChatPipeline<'_> {
    /// Runs the request through guard, caches, retrieval and templates, in
    /// a `chat` span whose children are the stages: `guard` (input),
    /// `cache` (semantic), `retrieve` (`embed`, `search`), `guard`
    /// (context), `prompt`, `cache` (exact).
    pub async fn prepare(
        &self,
        generator: &GeneratorHandle,
        req: ChatRequest,
    ) -> Result<Prepared, ServiceError> {
        let span = chat_span(&req, Some(&generator.info.id));
        let prepared = self.stages(generator, req).instrument(span.clone()).await?;
        let hit = match &prepared {
            Prepared::Cached { hit, .. } => hit.as_str(),
            Prepared::Generate(job) => {
                span.record("gen_ai.usage.input_tokens", job.prompt.len() as i64);
                "none"
            }
        };
        span.record("cache.hit", hit);
        Ok(prepared)
    }

    async fn stages(&self, generator: &GeneratorHandle, req: ChatRequest) -> Result<Prepared, ServiceError> {
        // A bad retrieval mode is a 400 even when a cache would answer.
        req.rag.as_ref().map(RagRequest::ranking).transpose()?;
        req.rag.as_ref().map(|r| self.reranker_for(r)).transpose()?;
        let cacheable = cache::cacheable(&req.settings, req.client_bypass);
        let question = rag::question_index(&req.messages).ok();
        let input_check = self.check_input(&req);
        // Tools are not part of a semantic bucket: such requests skip it.
        let semantic = (self.semantic_cache)
            .filter(|_| cacheable && req.tools.is_none())
            .zip(question);
        let retrieval = async {
            let mut semantic_query = None;
            if let (Some((cache, q)), Some(embedder)) = (semantic, &self.embedder) {
                let span = tracing::info_span!("cache", cache.kind = "semantic");
                let lookup = (self.semantic_lookup(cache, embedder, generator, &req, q)).instrument(span);
                match timing::timed("cache", lookup).await? {
                    SemanticLookup::Hit(body) => return Ok(Err(body)),
                    SemanticLookup::Miss(query) => semantic_query = query,
                }
            }
            let augmented = self.augment(&req).await?;
            Ok::<_, ServiceError>(Ok((augmented, semantic_query)))
        };
        let (input_flag, retrieved) = tokio::try_join!(input_check, retrieval)?;
        let (augmented, semantic_query) = match retrieved {
            Err(body) => {
                return Ok(Prepared::Cached {
                    body,
                    hit: CacheHit::Semantic,
                })
            }
            Ok(found) => found,
        };
        let rag_question = augmented.rag_question(req.rag.is_some());
        // Tools go to a template that renders them, else into the system
        // message.
        let knows_tools = generator.template.as_ref().is_some_and(|t| t.knows_tools());
        let (messages, template_tools) = match &req.tools {
            Some(tools) if tools.offered() && knows_tools => {
                tools.check_literal(generator.tokenizer.as_ref())?;
                (augmented.messages, Some(tools.template_json()))
            }
            Some(tools) => (tools.describe_in(augmented.messages), None),
            None => (augmented.messages, None),
        };
        let prompt =
            prompt_ids(generator, messages, template_tools, true).instrument(tracing::info_span!("prompt"));
        let prompt = timing::timed("prompt", prompt).await?;
        let mut keys = CacheKeys {
            exact: None,
            semantic: semantic_query,
        };
        if let Some(cache) = self.exact_cache.filter(|_| cacheable) {
            let span = tracing::info_span!("cache", cache.kind = "exact");
            // What the answer shows besides its text, and the policy that
            // screened it: another policy may answer otherwise.
            let policy = self.guard.as_ref().map(|g| &g.policy);
            let shown = serde_json::json!([
                augmented.sources,
                augmented.blocked,
                augmented.flags,
                input_flag,
                policy
            ]);
            let parts = CacheKeyParts {
                tenant: &req.tenant,
                endpoint: "chat",
                model: &generator.info.id,
                prompt: &prompt,
                settings: &req.settings,
                extra: Some(&shown),
            };
            let started = std::time::Instant::now();
            let lookup = cache.lookup(parts).instrument(span).await;
            timing::record("cache", started.elapsed());
            match lookup {
                Lookup::Hit(body) => {
                    return Ok(Prepared::Cached {
                        body,
                        hit: CacheHit::Exact,
                    })
                }
                Lookup::Miss(key) => keys.exact = Some(key),
            }
        }
        let output = (self.guard.as_ref())
            .filter(|g| g.policy.output)
            .map(|g| OutputCheck {
                canary: augmented.canary,
                guard: Some(g.clone()),
            });
        Ok(Prepared::Generate(Box::new(ChatJob {
            rag_question,
            prompt,
            sources: augmented.sources,
            blocked: augmented.blocked,
            keys,
            guard_flags: input_flag.into_iter().chain(augmented.flags).collect(),
            output,
        })))
    }

    /// The guard and retrieval of [`Self::prepare`], for a request another
    /// server will answer (no caches: their keys name local models).
    pub async fn prepare_forward(&self, req: ChatRequest) -> Result<ForwardJob, ServiceError> {
        let stages = async { tokio::try_join!(self.check_input(&req), self.augment(&req)) };
        let (input_flag, augmented) = stages.instrument(chat_span(&req, None)).await?;
        Ok(ForwardJob {
            rag_question: augmented.rag_question(req.rag.is_some()),
            sources: augmented.sources,
            blocked: augmented.blocked,
            guard_flags: input_flag.into_iter().chain(augmented.flags).collect(),
        })
    }

    /// The guard's verdict on the question (the last user message), when
    /// the tenant's policy screens it.
    async fn check_input(&self, req: &ChatRequest) -> Result<Option<GuardFlag>, ServiceError> {
        match (
            self.guard.as_ref().filter(|g| g.policy.input),
            rag::question_index(&req.messages),
        ) {
            (Some(guard), Ok(q)) => {
                timing::timed("guard", guard.check_input(req.messages[q].content.clone())).await
            }
            _ => Ok(None),
        }
    }

    /// Stores a fresh answer where the request's keys say (a shared exact
    /// cache is waited for, at most its store's timeout).
    pub async fn remember(&self, keys: CacheKeys, body: &Value) {
        if let (Some(cache), Some(key)) = (self.exact_cache, keys.exact) {
            cache.put(key, body).await;
        }
        if let (Some(cache), Some(query)) = (self.semantic_cache, keys.semantic) {
            cache.put(query, body);
        }
    }

    async fn semantic_lookup(
        &self,
        cache: &SemanticCache,
        embedder: &ModelHandle,
        generator: &GeneratorHandle,
        req: &ChatRequest,
        question: usize,
    ) -> Result<SemanticLookup, ServiceError> {
        // Read before retrieval: an answer built from newer data than this
        // version lands in a bucket no later request asks.
        let collection_version = match (&req.rag, self.collections) {
            (Some(r), Some(collections)) => {
                Some(collections.version(&req.tenant, r.collection.clone()).await?)
            }
            _ => None,
        };
        let parts = cache::BucketParts {
            collection_version,
            tenant: &req.tenant,
            model: &generator.info.id,
            settings: &req.settings,
            messages: &req.messages,
            question,
            rag: req.rag.as_ref(),
            guard_policy: self.guard.as_ref().map(|g| &g.policy),
        };
        let Some(query) = cache.query(embedder, parts).await? else {
            return Ok(SemanticLookup::Miss(None));
        };
        Ok(match cache.get(&query) {
            Some(body) => SemanticLookup::Hit(body),
            None => SemanticLookup::Miss(Some(query)),
        })
    }

    /// The reranker when `rag` asks for reranking (a 400 when this server
    /// runs none).
    fn reranker_for(&self, rag: &RagRequest) -> Result<Option<&RerankerHandle>, ServiceError> {
        match (rag.rerank, &self.reranker) {
            (false, _) => Ok(None),
            (true, Some(r)) => Ok(Some(r)),
            (true, None) => Err(ServiceError::invalid(
                "`rerank` needs a reranker model, and this server runs none (start it with `--reranker NAME`)",
                "rerank",
            )),
        }
    }

    /// For RAG: retrieves chunks for the question (candidates, reranked
    /// down to `top_k` when asked), leaves out those the guard flags, and
    /// puts the rest into the question.
    async fn augment(&self, req: &ChatRequest) -> Result<Augmented, ServiceError> {
        let Some(rag) = &req.rag else {
            return Ok(Augmented {
                messages: req.messages.clone(),
                sources: None,
                blocked: None,
                flags: Vec::new(),
                canary: None,
            });
        };
        let q = rag::question_index(&req.messages)?;
        let collections = self
            .collections
            .ok_or_else(|| ServiceError::Unavailable("this server has no knowledge base".into()))?;
        let embedder = self
            .embedder
            .as_ref()
            .ok_or_else(|| ServiceError::NotFound("this server runs no embedding model".into()))?;
        let reranker = self.reranker_for(rag)?;
        let top_k = rag.top_k.unwrap_or(rag::DEFAULT_TOP_K);
        let query = SearchQuery {
            collection: rag.collection.clone(),
            query: req.messages[q].content.clone(),
            top_k: rag.retrieved(top_k, collections.max_top_k())?,
            filter: rag.filter.clone(),
            ranking: rag.ranking()?,
        };
        let span = tracing::info_span!(
            "retrieve",
            rag.collection = %query.collection,
            rag.top_k = query.top_k as i64,
            rag.chunks = tracing::field::Empty,
        );
        let retrieve = collections
            .retrieve(&req.tenant, embedder, query)
            .instrument(span.clone());
        let mut chunks = timing::timed("retrieve", retrieve).await?.chunks;
        span.record("rag.chunks", chunks.len() as i64);
        if let Some(reranker) = reranker {
            let question = req.messages[q].content.clone();
            chunks = timing::timed("rerank", rerank_chunks(reranker, question, chunks, top_k)).await?;
        }
        let (mut blocked, mut flags) = (None, Vec::new());
        if let Some(guard) = self.guard.as_ref().filter(|g| g.policy.context) {
            let screen = guard.screen(chunks.iter().map(|c| c.text.clone()).collect());
            let verdicts = timing::timed("guard", screen).await?;
            let flagged = verdicts.iter().flatten().count() as u64;
            match guard.policy.action {
                GuardAction::Block if flagged > 0 => {
                    guard
                        .metrics
                        .blocks
                        .with_label_values(&["context"])
                        .inc_by(flagged);
                    return Err(ServiceError::Blocked(format!(
                        "{flagged} retrieved chunk(s) were flagged as prompt injections; this tenant's policy refuses the request"
                    )));
                }
                GuardAction::Flag => {
                    guard
                        .metrics
                        .flags
                        .with_label_values(&["context"])
                        .inc_by(flagged);
                    flags = (chunks.iter().zip(&verdicts))
                        .filter_map(|(c, v)| {
                            v.map(|score| GuardFlag {
                                stage: "context",
                                score,
                                document_id: Some(c.document_id.clone()),
                            })
                        })
                        .collect();
                }
                GuardAction::Block | GuardAction::Redact => {
                    guard
                        .metrics
                        .blocks
                        .with_label_values(&["context"])
                        .inc_by(flagged);
                    let (kept, left_out): (Vec<_>, Vec<_>) =
                        chunks.into_iter().zip(verdicts).partition(|(_, v)| v.is_none());
                    blocked = Some(
                        (left_out.into_iter())
                            .map(|(c, score)| BlockedChunk {
                                document_id: c.document_id,
                                chunk_id: c.chunk_id,
                                chunk_index: c.chunk_index,
                                injection_score: score.unwrap_or_default(),
                            })
                            .collect(),
                    );
                    chunks = kept.into_iter().map(|(c, _)| c).collect();
                }
            }
        }
        let sources: Vec<Source<'_>> = chunks.iter().map(Source::from).collect();
        let mut messages = rag::augment(self.rag_template, req.messages.clone(), q, &sources)?;
        // Answers are screened: a marker the answer must never repeat.
        let canary = (self.guard.as_ref().filter(|g| g.policy.output)).map(|g| {
            let canary = g.config.canary.clone().unwrap_or_else(fresh_canary);
            rag::add_canary(&mut messages, &canary);
            canary
        });
        Ok(Augmented {
            messages,
            sources: Some(chunks),
            blocked,
            flags,
            canary,
        })
    }
}

/// The span of one request's pipeline (`model`: the local generator).
fn chat_span(req: &ChatRequest, model: Option<&str>) -> tracing::Span {
    tracing::info_span!(
        "chat",
        tenant = %req.tenant.as_str(),
        gen_ai.request.model = model,
        rag.collection = req.rag.as_ref().map(|r| r.collection.as_str()),
        cache.hit = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
    )
}

/// A marker no one can guess, for one request's prompt.
fn fresh_canary() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH))
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("CANARY-{:016x}", h.finish())
}

enum SemanticLookup {
    Hit(Value),
    /// No answer; the query to store the fresh one under (`None`: this
    /// question is not cached, e.g. longer than the embedder's window).
    Miss(Option<SemanticQuery>),
}

/// Renders and tokenizes the conversation off the async runtime: the ids a
/// chat completion feeds the model (`add_generation_prompt` true), and what
/// `/tokenize` reports for the same messages.
pub async fn prompt_ids(
    handle: &GeneratorHandle,
    messages: Vec<ChatMessage>,
    tools: Option<Value>,
    add_generation_prompt: bool,
) -> Result<Vec<u32>, ServiceError> {
    let template = handle.template.clone().ok_or_else(|| {
        ServiceError::invalid(
            format!(
                "model `{}` has no chat template; use /v1/completions",
                handle.info.id
            ),
            "model",
        )
    })?;
    let tokenizer: Arc<dyn ragd_core::TextTokenizer> = handle.tokenizer.clone();
    tokio::task::spawn_blocking(move || {
        // Special tokens come only from the template's own text.
        template
            .encode_with(
                tokenizer.as_ref(),
                &messages,
                tools.as_ref(),
                add_generation_prompt,
            )
            .map_err(|e| match e {
                ragd_core::ModelError::InvalidInput(m) => {
                    ServiceError::invalid(format!("cannot apply the chat template: {m}"), "messages")
                }
                other => other.into(),
            })
    })
    .await
    .map_err(|e| ServiceError::task("chat template", e))?
}
