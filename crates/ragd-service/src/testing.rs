//! Fakes for fast tests of the service layer and of its users (feature
//! `testing`): model handles over the fake models of `ragd_core::testing`,
//! a knowledge base in a temporary folder and a [`Fixture`] that builds a
//! [`ChatPipeline`]. No model files; a whole chat runs in milliseconds.
//!
//! Embedder and guard read text with `ragd_index`'s [`WhitespaceTokenizer`]
//! (a token per word, so the guard flags a *word*); the generator reads it
//! with [`AsciiTokenizer`] (a token per character, so prompts decode back
//! to their text exactly).

use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use ragd_core::testing::{FakeClassifier, FakeEmbedder, FakeGenerator};
use ragd_core::{Classifier, Embedder, Generator, TextTokenizer};
use ragd_engine::{
    BatchLimits, BatchWorker, GenerationEngine, GenerationLimits, GenerationMetrics, WorkerMetrics,
};
use ragd_index::testing::WhitespaceTokenizer;
use ragd_index::{DocumentInput, Metadata, Store, StoreOptions};
use ragd_models::llama::ChatTemplate;

use crate::cache::{ResponseCache, SemanticCache, SemanticConfig};
use crate::chat::ChatPipeline;
use crate::collections::{Collections, MemoryBackend};
use crate::guard::Guard;
use crate::metrics::{GuardMetrics, IndexMetrics};
use crate::rag::RagTemplate;
use crate::{CollectionLimits, GeneratorHandle, GuardConfig, ModelHandle, Tenant};

/// Dimension of the fake embedder's vectors, and its and the guard's
/// window in tokens (words).
pub const EMBED_DIM: usize = 64;
pub const WINDOW: usize = 128;
/// The word the fixture's guard flags.
pub const GUARD_WORD: &str = "INJECT";
/// The fixture's tenant and its one collection.
pub const TENANT: &str = "acme";
pub const COLLECTION: &str = "docs";
/// The fixture generator's context, in tokens (characters).
pub const CONTEXT: usize = 512;

/// The generator's special tokens and vocabulary: ASCII is `0..128`.
pub const IM_START: u32 = 128;
pub const IM_END: u32 = 129;
pub const VOCAB: usize = 130;

/// A ChatML-like template (`<|im_start|>role\ncontent<|im_end|>\n`).
pub const TINY_CHAT_TEMPLATE: &str =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// A short RAG template: the question, then each source on its own line.
pub const TINY_RAG_TEMPLATE: &str = "{{ question }}\n{% for s in sources %}- {{ s.text }}\n{% endfor %}";

/// A token per character: ASCII characters are their own ids, any other
/// character is `?`; `<|im_start|>` and `<|im_end|>` in template text are
/// [`IM_START`] and [`IM_END`]. Decoding leaves the special tokens out.
pub struct AsciiTokenizer;

fn ascii(c: char) -> u32 {
    if c.is_ascii() {
        c as u32
    } else {
        u32::from(b'?')
    }
}

impl TextTokenizer for AsciiTokenizer {
    fn encode(&self, text: &str) -> ragd_core::Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(text.len());
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            let (id, len) = match () {
                _ if rest.starts_with("<|im_start|>") => (IM_START, "<|im_start|>".len()),
                _ if rest.starts_with("<|im_end|>") => (IM_END, "<|im_end|>".len()),
                _ => (ascii(c), c.len_utf8()),
            };
            ids.push(id);
            rest = &rest[len..];
        }
        Ok(ids)
    }

    fn encode_literal(&self, text: &str) -> ragd_core::Result<Vec<u32>> {
        Ok(text.chars().map(ascii).collect())
    }

    fn vocab_size(&self) -> usize {
        VOCAB
    }

    fn decode_text(&self, ids: &[u32]) -> ragd_core::Result<String> {
        Ok(ids
            .iter()
            .filter_map(|&id| char::from_u32(id).filter(char::is_ascii))
            .collect())
    }

    fn token_bytes(&self) -> Option<Vec<Vec<u8>>> {
        let mut bytes: Vec<Vec<u8>> = (0..128u8).map(|b| vec![b]).collect();
        bytes.push(b"\xFF<|im_start|>".to_vec());
        bytes.push(b"\xFF<|im_end|>".to_vec());
        Some(bytes)
    }
}

fn batch_handle<M: ragd_engine::BatchModel>(
    info: ragd_core::ModelInfo,
    model: M,
    labels: Vec<String>,
    dim: usize,
) -> ModelHandle {
    let batch = BatchLimits::default();
    let (worker, _thread) = BatchWorker::spawn(&info.id, model, batch, WorkerMetrics::new(&info.id))
        .expect("spawn a batch worker");
    ModelHandle {
        info,
        tokenizer: Arc::new(WhitespaceTokenizer),
        worker,
        labels,
        output_dim: dim,
        batch,
    }
}

/// An embedder handle over [`FakeEmbedder`]: texts sharing words are close.
pub fn fake_embedder() -> ModelHandle {
    let model = FakeEmbedder::new(EMBED_DIM, WINDOW);
    let info = model.info().clone();
    batch_handle(info, Box::new(model) as Box<dyn Embedder>, Vec::new(), EMBED_DIM)
}

/// A guard handle over [`FakeClassifier`] that flags (score 0.9) every text
/// holding the whitespace-separated word `word`, and nothing else (0.1).
/// Its model id is `fake-guard-WORD`.
pub fn fake_guard(word: &str) -> ModelHandle {
    let trigger = WhitespaceTokenizer.encode(word).expect("tokenize")[0];
    let model = FakeClassifier::new(trigger, WINDOW);
    let (mut info, labels) = (model.info().clone(), model.labels().to_vec());
    info.id = format!("fake-guard-{word}");
    let dim = labels.len();
    batch_handle(info, Box::new(model) as Box<dyn Classifier>, labels, dim)
}

/// A generator handle over [`FakeGenerator`] (greedy output: see
/// [`FakeGenerator::reference`]) with [`AsciiTokenizer`],
/// [`TINY_CHAT_TEMPLATE`], a context of `context` tokens and [`IM_END`]
/// as its end of turn.
pub fn fake_generator(context: usize) -> GeneratorHandle {
    let model = FakeGenerator::new(VOCAB, context, 16, context.div_ceil(16));
    let info = model.info().clone();
    let metrics = GenerationMetrics::new(&info.id);
    let template =
        ChatTemplate::new(TINY_CHAT_TEMPLATE, "<|im_start|>", "<|im_end|>").expect("template compiles");
    let (token_bytes, grammars) = crate::generation::structured::vocabulary(&AsciiTokenizer, Some(IM_END))
        .expect("the ASCII vocabulary makes a token trie");
    GeneratorHandle {
        grammars,
        token_bytes,
        info,
        tokenizer: Arc::new(AsciiTokenizer),
        template: Some(Arc::new(template)),
        engine: GenerationEngine::spawn(Box::new(model), GenerationLimits::default(), metrics),
        stop_tokens: vec![IM_END],
        tool_format: crate::tool_format::ToolCallFormat::Hermes,
    }
}

/// Opens a store in `dir` and, for `tenant`, creates the collection `name`
/// embedded by `embedder` holding `docs` (`(id, text)` pairs).
pub async fn collections_with(
    dir: &std::path::Path,
    registry: &Registry,
    embedder: &ModelHandle,
    tenant: &Tenant,
    name: &str,
    docs: &[(&str, &str)],
) -> Collections {
    let store = Store::open(dir, StoreOptions::default()).expect("open a store");
    let metrics = IndexMetrics::register(registry).expect("register index metrics");
    let backend = Arc::new(MemoryBackend::new(Arc::new(store)));
    let collections = Collections::new(backend, CollectionLimits::default(), 64 * 1024, metrics);
    let created = collections.create(tenant, name.into(), embedder, None, None, Metadata::new());
    created.await.expect("create a collection");
    if !docs.is_empty() {
        let docs = (docs.iter())
            .map(|(id, text)| DocumentInput {
                id: id.to_string(),
                text: text.to_string(),
                metadata: Metadata::new(),
            })
            .collect();
        (collections.upsert(tenant, name.into(), embedder, docs).await).expect("upsert");
    }
    collections
}

/// Which caches a [`Fixture`] runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caches {
    pub exact: bool,
    /// At cosine similarity 0.9.
    pub semantic: bool,
}

/// Everything a [`ChatPipeline`] uses, with the metrics in `registry`.
/// [`TENANT`]'s collection [`COLLECTION`] holds the fixture's documents;
/// the guard flags [`GUARD_WORD`]; the generator's context is [`CONTEXT`].
pub struct Fixture {
    pub registry: Registry,
    pub embedder: ModelHandle,
    pub guard: Guard,
    pub generator: GeneratorHandle,
    pub collections: Collections,
    pub rag_template: RagTemplate,
    pub exact_cache: Option<ResponseCache>,
    pub semantic_cache: Option<SemanticCache>,
    /// Last: removed after the store is closed.
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub async fn new(caches: Caches, docs: &[(&str, &str)]) -> Self {
        let registry = Registry::new();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let embedder = fake_embedder();
        let tenant = Tenant::new(TENANT);
        let collections = collections_with(dir.path(), &registry, &embedder, &tenant, COLLECTION, docs).await;
        let config = GuardConfig {
            screen_chat: true,
            ..GuardConfig::default()
        };
        let metrics = GuardMetrics::register(&registry).expect("register guard metrics");
        let guard = Guard {
            handles: vec![fake_guard(GUARD_WORD)],
            policy: crate::guard_policy::GuardPolicy::from_config(&config),
            config,
            metrics,
        };
        let (ttl, max_bytes) = (Duration::from_secs(600), 1 << 20);
        let semantic = SemanticConfig {
            threshold: 0.9,
            max_entries: 64,
            max_bytes,
            ttl,
        };
        Self {
            embedder,
            guard,
            generator: fake_generator(CONTEXT),
            collections,
            rag_template: RagTemplate::new(TINY_RAG_TEMPLATE).expect("RAG template compiles"),
            exact_cache: (caches.exact)
                .then(|| ResponseCache::new(max_bytes as u64, ttl, &registry).unwrap()),
            semantic_cache: (caches.semantic).then(|| SemanticCache::new(semantic, &registry).unwrap()),
            registry,
            _dir: dir,
        }
    }

    /// The pipeline as a request of `tenant` sees it (models queued as it).
    pub fn pipeline(&self, tenant: &Tenant) -> ChatPipeline<'_> {
        let mut guard = self.guard.clone();
        guard.handles = (guard.handles.into_iter())
            .map(|h| h.for_tenant(tenant))
            .collect();
        ChatPipeline {
            embedder: Some(self.embedder.clone().for_tenant(tenant)),
            guard: Some(guard),
            collections: Some(&self.collections),
            rag_template: &self.rag_template,
            exact_cache: self.exact_cache.as_ref(),
            semantic_cache: self.semantic_cache.as_ref(),
            reranker: None,
        }
    }

    /// The value of counter `name` with label `label = value` (0 if unseen).
    pub fn counter(&self, name: &str, label: &str, value: &str) -> f64 {
        let families = self.registry.gather();
        let metrics = families
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric());
        let labelled = |l: &prometheus::proto::LabelPair| (l.name(), l.value()) == (label, value);
        let metrics = metrics.filter(|m| m.get_label().iter().any(labelled));
        metrics.map(|m| m.get_counter().value()).sum()
    }
}
