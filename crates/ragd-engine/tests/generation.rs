//! Continuous batching with the fake generator: runs in milliseconds.
//!
//! The fake model keeps a real paged KV cache (token ids stored per block
//! slot, read back through the block table), so every "output matches the
//! sequential reference" assertion also checks the KV bookkeeping.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ragd_core::testing::FakeGenerator;
use ragd_engine::sampling::SamplingParams;
use ragd_engine::{
    EngineError, FinishReason, GenerationEngine, GenerationEvent, GenerationLimits, GenerationMetrics,
    GenerationRequest, GenerationStream, InvalidRequest, Param, TenantKey, Usage,
};

const VOCAB: usize = 1000;

fn spawn(model: FakeGenerator, limits: GenerationLimits) -> (GenerationEngine, GenerationMetrics) {
    let metrics = GenerationMetrics::new("fake");
    let engine = GenerationEngine::spawn(Box::new(model), limits, metrics.clone());
    (engine, metrics)
}

fn limits(max_batch_tokens: usize, max_running: usize) -> GenerationLimits {
    GenerationLimits {
        queue_capacity: 64,
        per_tenant_queue_capacity: None,
        max_batch_tokens,
        max_running,
        prefix_cache: true,
    }
}

fn req(prompt: Vec<u32>, max_tokens: usize) -> GenerationRequest {
    GenerationRequest {
        prompt,
        max_tokens: Some(max_tokens),
        sampling: SamplingParams::default(),
        stop_tokens: vec![],
        ignore_eos: false,
        constraint: None,
        priority: 0,
    }
}

fn prompt(seed: u32, len: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (seed * 131 + i * 17 + 5) % VOCAB as u32)
        .collect()
}

/// Every token, then the final event.
async fn collect(mut s: GenerationStream) -> (Vec<u32>, GenerationEvent) {
    let mut tokens = Vec::new();
    let fut = async {
        loop {
            match s.next().await.expect("stream ended without a final event") {
                GenerationEvent::Token { id, .. } => tokens.push(id),
                end => return end,
            }
        }
    };
    let end = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("timed out");
    (tokens, end)
}

async fn next_token(s: &mut GenerationStream) -> u32 {
    match tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("timed out")
    {
        Some(GenerationEvent::Token { id, .. }) => id,
        other => panic!("expected a token, got {other:?}"),
    }
}

fn length(prompt_tokens: usize, completion_tokens: usize) -> GenerationEvent {
    GenerationEvent::Finished {
        reason: FinishReason::Length,
        usage: Usage {
            prompt_tokens,
            completion_tokens,
            cached_tokens: 0,
        },
    }
}

/// Collects each stream on its own task, started now; awaited, the outputs
/// in the streams' order and the keys in the order the streams finished.
fn collect_each<K: Send + 'static>(
    streams: Vec<(K, GenerationStream)>,
) -> impl std::future::Future<Output = (Vec<(Vec<u32>, GenerationEvent)>, Vec<K>)> {
    let order = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (streams.into_iter())
        .map(|(key, s)| {
            let order = order.clone();
            tokio::spawn(async move {
                let out = collect(s).await;
                order.lock().unwrap().push(key);
                out
            })
        })
        .collect();
    async move {
        let mut outs = Vec::with_capacity(tasks.len());
        for t in tasks {
            outs.push(t.await.unwrap());
        }
        let order = std::mem::take(&mut *order.lock().unwrap());
        (outs, order)
    }
}

/// Waits for a gauge to reach `want` (the engine thread updates it).
async fn eventually(what: &str, get: impl Fn() -> i64, want: i64) {
    for _ in 0..400 {
        if get() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what} is {}, expected {want}", get());
}

#[tokio::test]
async fn single_request_gets_the_reference_tokens_and_length_usage() {
    let (engine, metrics) = spawn(FakeGenerator::new(VOCAB, 256, 4, 64), GenerationLimits::default());
    assert_eq!(engine.context_len(), 256);
    assert_eq!(engine.kv_layout().num_blocks, 64);
    assert_eq!(engine.model_id(), "fake-generator");
    let p = prompt(1, 7);
    let (tokens, end) = collect(engine.submit(req(p.clone(), 20)).unwrap()).await;
    assert_eq!(tokens, FakeGenerator::reference(VOCAB, &p, 20, &[]));
    assert_eq!(end, length(7, 20));
    assert_eq!(metrics.generation_tokens.get(), 20);
    assert_eq!(metrics.prompt_tokens.get(), 7);
    assert_eq!(metrics.time_to_first_token.get_sample_count(), 1);
    assert_eq!(metrics.inter_token_latency.get_sample_count(), 19);
    assert_eq!(metrics.e2e_request_latency.get_sample_count(), 1);
    assert_eq!(metrics.kv_blocks_capacity.get(), 64);
    eventually("kv_blocks_used", || metrics.kv_blocks_used.get(), 0).await;
}

#[tokio::test]
async fn a_request_that_exactly_fills_the_context_runs() {
    let (engine, _) = spawn(FakeGenerator::new(VOCAB, 32, 4, 64), GenerationLimits::default());
    let p = prompt(2, 12);
    let (tokens, end) = collect(engine.submit(req(p.clone(), 20)).unwrap()).await;
    assert_eq!(tokens, FakeGenerator::reference(VOCAB, &p, 20, &[]));
    assert_eq!(end, length(12, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_match_their_solo_output_and_are_batched() {
    let model = FakeGenerator::new(VOCAB, 256, 4, 1024).with_delay(Duration::from_millis(1));
    let probe = model.probe();
    let (engine, metrics) = spawn(model, GenerationLimits::default());
    let cases: Vec<(Vec<u32>, usize)> = (0..16u32)
        .map(|i| (prompt(i, 1 + 3 * i as usize), 5 + 2 * i as usize))
        .collect();
    let streams: Vec<_> = cases
        .iter()
        .map(|(p, n)| engine.submit(req(p.clone(), *n)).unwrap())
        .collect();
    let tasks: Vec<_> = streams.into_iter().map(|s| tokio::spawn(collect(s))).collect();
    for ((p, n), t) in cases.iter().zip(tasks) {
        let (tokens, end) = t.await.unwrap();
        assert_eq!(
            tokens,
            FakeGenerator::reference(VOCAB, p, *n, &[]),
            "prompt {p:?}"
        );
        assert_eq!(end, length(p.len(), *n));
    }
    let sizes = probe.batch_sizes();
    assert!(sizes.iter().any(|&n| n > 1), "never batched: {sizes:?}");
    assert!(*sizes.iter().max().unwrap() >= 8, "little batching: {sizes:?}");
    assert!(metrics.batch_size.get_sample_count() > 0);
    eventually("kv_blocks_used", || metrics.kv_blocks_used.get(), 0).await;
    eventually("running", || metrics.running.get(), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_prompt_is_prefilled_in_chunks_while_others_decode() {
    let model = FakeGenerator::new(VOCAB, 512, 4, 256).with_delay(Duration::from_millis(1));
    let probe = model.probe();
    let (engine, _) = spawn(model, limits(8, 64));
    let (pa, pb, long) = (prompt(1, 3), prompt(2, 4), prompt(3, 100));
    let mut a = engine.submit(req(pa.clone(), 80)).unwrap();
    let mut b = engine.submit(req(pb.clone(), 80)).unwrap();
    let a0 = next_token(&mut a).await;
    let b0 = next_token(&mut b).await;
    let l = engine.submit(req(long.clone(), 5)).unwrap();
    let (ta, tb, tl) = tokio::join!(collect(a), collect(b), collect(l));
    let mut got_a = vec![a0];
    got_a.extend(ta.0);
    let mut got_b = vec![b0];
    got_b.extend(tb.0);
    assert_eq!(got_a, FakeGenerator::reference(VOCAB, &pa, 80, &[]));
    assert_eq!(got_b, FakeGenerator::reference(VOCAB, &pb, 80, &[]));
    assert_eq!(tl.0, FakeGenerator::reference(VOCAB, &long, 5, &[]));

    let steps = probe.steps();
    for s in &steps {
        assert!(
            s.iter().map(|c| c.1).sum::<usize>() <= 8,
            "step over budget: {s:?}"
        );
        for &(start, len, want) in s {
            // Logits only for a decode, a whole short prompt or the end of the long one.
            if want && len > 1 {
                assert!(
                    start == 0 || start + len == 100,
                    "logits wanted mid-prompt: {s:?}"
                );
            }
        }
    }
    // The long prompt's prefill chunks: several tokens, no logits.
    let prefill_steps: Vec<_> = steps
        .iter()
        .filter(|s| s.iter().any(|c| c.1 > 1 && !c.2))
        .collect();
    assert!(prefill_steps.len() >= 100 / 8, "not chunked: {prefill_steps:?}");
    for s in prefill_steps {
        let decodes = s.iter().filter(|c| c.1 == 1 && c.2).count();
        assert_eq!(
            decodes, 2,
            "the running streams stalled during the prefill: {s:?}"
        );
        assert_eq!(
            s[..2].iter().filter(|c| c.1 == 1).count(),
            2,
            "decodes come first: {s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tiny_kv_cache_preempts_and_everyone_still_gets_their_solo_output() {
    // 12 blocks of 4 = 48 token slots; each request needs up to 30.
    let model = FakeGenerator::new(VOCAB, 64, 4, 12).with_delay(Duration::from_micros(200));
    let (engine, metrics) = spawn(model, limits(64, 64));
    let cases: Vec<(Vec<u32>, usize)> = (0..6u32).map(|i| (prompt(10 + i, 6 + i as usize), 20)).collect();
    let streams: Vec<_> = cases
        .iter()
        .map(|(p, n)| engine.submit(req(p.clone(), *n)).unwrap())
        .collect();
    let tasks: Vec<_> = streams.into_iter().map(|s| tokio::spawn(collect(s))).collect();
    for ((p, n), t) in cases.iter().zip(tasks) {
        let (tokens, end) = t.await.unwrap();
        assert_eq!(
            tokens,
            FakeGenerator::reference(VOCAB, p, *n, &[]),
            "prompt {p:?}"
        );
        assert_eq!(end, length(p.len(), *n));
    }
    assert!(metrics.preemptions.get() > 0, "no preemption happened");
    eventually("kv_blocks_used", || metrics.kv_blocks_used.get(), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_a_stream_cancels_it_and_frees_its_blocks() {
    let model = FakeGenerator::new(VOCAB, 256, 4, 256).with_delay(Duration::from_millis(1));
    let probe = model.probe();
    let (engine, metrics) = spawn(model, GenerationLimits::default());
    let ps: Vec<_> = (0..4u32).map(|i| prompt(20 + i, 5)).collect();
    let mut streams: Vec<_> = ps
        .iter()
        .map(|p| engine.submit(req(p.clone(), 60)).unwrap())
        .collect();
    let mut victim = streams.remove(1);
    for _ in 0..3 {
        next_token(&mut victim).await;
    }
    drop(victim);
    let tasks: Vec<_> = streams.into_iter().map(|s| tokio::spawn(collect(s))).collect();
    for (p, t) in [&ps[0], &ps[2], &ps[3]].into_iter().zip(tasks) {
        let (tokens, end) = t.await.unwrap();
        assert_eq!(tokens, FakeGenerator::reference(VOCAB, p, 60, &[]));
        assert_eq!(end, length(5, 60));
    }
    let sizes = probe.batch_sizes();
    assert!(
        sizes.iter().filter(|&&n| n == 3).count() > 20,
        "the cancelled one kept running: {sizes:?}"
    );
    eventually("kv_blocks_used", || metrics.kv_blocks_used.get(), 0).await;
    eventually("running", || metrics.running.get(), 0).await;
    eventually("waiting", || metrics.waiting.get(), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_overloaded_and_drains() {
    let model = FakeGenerator::new(VOCAB, 256, 4, 256).with_delay(Duration::from_millis(1));
    let (engine, metrics) = spawn(
        model,
        GenerationLimits {
            queue_capacity: 2,
            per_tenant_queue_capacity: None,
            max_batch_tokens: 64,
            max_running: 1,
            prefix_cache: true,
        },
    );
    assert_eq!(metrics.queue.capacity.get(), 2);
    let mut running = engine.submit(req(prompt(1, 4), 200)).unwrap();
    next_token(&mut running).await; // started: no longer queued
    let b = engine.submit(req(prompt(2, 4), 3)).unwrap();
    let c = engine.submit(req(prompt(3, 4), 3)).unwrap();
    match engine.submit(req(prompt(4, 4), 3)) {
        Err(EngineError::Overloaded { capacity, .. }) => assert_eq!(capacity, 2),
        other => panic!("expected Overloaded, got {:?}", other.err()),
    }
    let rejections = |reason| metrics.queue.rejections.with_label_values(&[reason]).get();
    assert_eq!((rejections("full"), rejections("tenant_share")), (1, 0));
    drop(running);
    for (s, seed) in [(b, 2), (c, 3)] {
        let (tokens, _) = collect(s).await;
        assert_eq!(tokens, FakeGenerator::reference(VOCAB, &prompt(seed, 4), 3, &[]));
    }
    let (tokens, _) = collect(engine.submit(req(prompt(4, 4), 3)).unwrap()).await;
    assert_eq!(tokens.len(), 3);
}

#[tokio::test]
async fn invalid_requests_are_refused_at_submit_with_their_kind() {
    // Context 64; the cache holds 16 blocks of 2 = 32 tokens, so a sequence
    // may reach 32 positions.
    let (engine, _) = spawn(FakeGenerator::new(VOCAB, 64, 2, 16), GenerationLimits::default());
    assert_eq!(engine.max_context(), 32);
    let invalid = |r: Result<GenerationStream, EngineError>| match r {
        Err(EngineError::Invalid(why)) => why,
        other => panic!("expected Invalid, got {:?}", other.err()),
    };
    assert_eq!(
        invalid(engine.submit(req(vec![], 5))),
        InvalidRequest::EmptyPrompt
    );
    assert_eq!(
        invalid(engine.submit(req(prompt(1, 4), 0))),
        InvalidRequest::ZeroMaxTokens
    );
    // Past the model's context, and past the cache alone.
    for len in [70, 32] {
        let why = invalid(engine.submit(req(prompt(1, len), 1)));
        assert_eq!(
            why,
            InvalidRequest::PromptTooLong {
                prompt_tokens: len,
                max_context: 32
            }
        );
        assert_eq!(why.param(), Param::Prompt);
    }
    let why = invalid(engine.submit(req(prompt(1, 20), 20)));
    assert_eq!(
        why,
        InvalidRequest::MaxTokensPastContext {
            prompt_tokens: 20,
            max_tokens: 20,
            max_context: 32
        }
    );
    assert_eq!(why.param(), Param::MaxTokens);
    let m = why.to_string();
    assert!(
        m.contains("max_tokens") && m.contains("context") && m.contains("at most 12"),
        "{m}"
    );
    assert_eq!(
        invalid(engine.submit(req(vec![1, VOCAB as u32], 5))),
        InvalidRequest::TokenOutOfVocabulary {
            token: VOCAB as u32,
            vocab_size: VOCAB
        }
    );
    // Exactly full fits.
    let (tokens, _) = collect(engine.submit(req(prompt(1, 12), 20)).unwrap()).await;
    assert_eq!(tokens.len(), 20);
}

#[tokio::test]
async fn without_max_tokens_a_request_generates_to_the_end_of_the_context() {
    // Context 16, cache 64: the context is the bound.
    let (engine, _) = spawn(FakeGenerator::new(VOCAB, 16, 2, 32), GenerationLimits::default());
    let mut r = req(prompt(2, 10), 1);
    r.max_tokens = None;
    r.ignore_eos = true;
    let (tokens, end) = collect(engine.submit(r).unwrap()).await;
    assert_eq!(tokens.len(), 6);
    assert_eq!(end, length(10, 6));
}

#[tokio::test]
async fn a_stop_token_finishes_with_stop_and_is_not_emitted() {
    let (engine, _) = spawn(FakeGenerator::new(VOCAB, 256, 4, 64), GenerationLimits::default());
    let p = prompt(5, 6);
    let full = FakeGenerator::reference(VOCAB, &p, 12, &[]);
    let at = (1..full.len()).find(|&i| !full[..i].contains(&full[i])).unwrap();
    let mut r = req(p.clone(), 12);
    r.stop_tokens = vec![full[at], 100_000];
    let (tokens, end) = collect(engine.submit(r.clone()).unwrap()).await;
    assert_eq!(tokens, full[..at].to_vec());
    assert_eq!(
        end,
        GenerationEvent::Finished {
            reason: FinishReason::Stop,
            usage: Usage {
                prompt_tokens: 6,
                completion_tokens: at + 1,
                cached_tokens: 0,
            },
        }
    );
    r.ignore_eos = true;
    let (tokens, end) = collect(engine.submit(r).unwrap()).await;
    assert_eq!(tokens, full);
    // The same prompt again: its first full block (of 4) comes from the
    // prefix cache.
    let GenerationEvent::Finished { reason, usage } = end else {
        panic!("{end:?}")
    };
    assert_eq!(
        (reason, usage.prompt_tokens, usage.completion_tokens),
        (FinishReason::Length, 6, 12)
    );
    assert_eq!(usage.cached_tokens, 4);
}

#[tokio::test]
async fn a_model_failure_fails_the_step_and_the_engine_keeps_serving() {
    let model = FakeGenerator::new(VOCAB, 256, 4, 64).with_panic_token(999);
    let probe = model.probe();
    let (engine, metrics) = spawn(model, GenerationLimits::default());
    probe.fail_next_steps(1);
    let (tokens, end) = collect(engine.submit(req(prompt(1, 5), 10)).unwrap()).await;
    assert!(tokens.is_empty());
    assert!(
        matches!(&end, GenerationEvent::Failed(m) if m.contains("injected")),
        "{end:?}"
    );

    let (tokens, end) = collect(engine.submit(req(vec![3, 999, 4], 10)).unwrap()).await;
    assert!(tokens.is_empty());
    assert!(
        matches!(&end, GenerationEvent::Failed(m) if m.contains("panicked")),
        "{end:?}"
    );

    let p = prompt(2, 5);
    let expected = FakeGenerator::reference(VOCAB, &p, 10, &[]);
    assert!(!expected.contains(&999));
    let (tokens, end) = collect(engine.submit(req(p, 10)).unwrap()).await;
    assert_eq!(tokens, expected);
    assert_eq!(end, length(5, 10));
    eventually("kv_blocks_used", || metrics.kv_blocks_used.get(), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_room_for_one_sequence_requests_complete_in_submission_order() {
    // Room for one: by max_running, then by the KV cache (4 blocks of 4 =
    // 16 slots; each request needs 14).
    for (blocks, max_running) in [(64, 1), (4, 64)] {
        let model = FakeGenerator::new(VOCAB, 64, 4, blocks).with_delay(Duration::from_micros(200));
        let (engine, _) = spawn(model, limits(64, max_running));
        let ps: Vec<_> = (0..5u32).map(|i| prompt(40 + i, 4)).collect();
        let streams: Vec<_> = (ps.iter().enumerate())
            .map(|(i, p)| (i, engine.submit(req(p.clone(), 10)).unwrap()))
            .collect();
        let (outs, order) = collect_each(streams).await;
        for (p, (tokens, end)) in ps.iter().zip(outs) {
            assert_eq!(tokens, FakeGenerator::reference(VOCAB, p, 10, &[]));
            assert_eq!(end, length(4, 10));
        }
        assert_eq!(
            order,
            vec![0, 1, 2, 3, 4],
            "blocks {blocks}, max_running {max_running}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_room_for_one_a_later_better_priority_request_finishes_first() {
    let model = FakeGenerator::new(VOCAB, 1024, 4, 512).with_delay(Duration::from_micros(500));
    let (engine, metrics) = spawn(model, limits(64, 1));
    let (a, b) = (TenantKey::new("a"), TenantKey::new("b"));
    // Holds the only place (for half a second at most) until dropped.
    let mut busy = engine.submit_as(&b, req(prompt(60, 4), 1000)).unwrap();
    next_token(&mut busy).await;
    // Earlier ones at the default priority (0), then an urgent one (-5)
    // from the tenant that already waits first.
    let submitted = [("a0", &a, 0), ("a1", &a, 0), ("b0", &b, 0), ("urgent", &a, -5)];
    let ps: Vec<_> = (0..4u32).map(|i| prompt(70 + i, 4)).collect();
    let streams: Vec<_> = (submitted.iter().zip(&ps))
        .map(|(&(name, tenant, priority), p)| {
            let r = GenerationRequest {
                priority,
                ..req(p.clone(), 6)
            };
            (name, engine.submit_as(tenant, r).unwrap())
        })
        .collect();
    let done = collect_each(streams);
    eventually("waiting", || metrics.waiting.get(), 4).await;
    drop(busy);
    let (outs, order) = done.await;
    for (p, (tokens, end)) in ps.iter().zip(outs) {
        assert_eq!(tokens, FakeGenerator::reference(VOCAB, p, 6, &[]));
        assert_eq!(end, length(4, 6));
    }
    // Then the rest as without priorities: round-robin across tenants.
    assert_eq!(order, vec!["urgent", "a0", "b0", "a1"]);
}

/// A constraint that allows one token at a time from a fixed script and
/// says the output is complete after the script.
struct Script {
    tokens: Vec<u32>,
    at: usize,
}

impl ragd_engine::TokenConstraint for Script {
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        let allowed = *self.tokens.get(self.at).ok_or("past the script")? as usize;
        for (i, l) in logits.iter_mut().enumerate() {
            if i != allowed {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    fn accept(&mut self, token: u32) -> Result<bool, String> {
        if self.tokens.get(self.at) != Some(&token) {
            return Err(format!("token {token} was not allowed"));
        }
        self.at += 1;
        Ok(self.at == self.tokens.len())
    }
}

#[tokio::test]
async fn a_constraint_decides_the_tokens_and_ends_the_output() {
    let (engine, _) = spawn(FakeGenerator::new(VOCAB, 256, 4, 64), limits(64, 8));
    let script = vec![7, 900, 7, 42];
    let mut constrained = req(prompt(1, 5), 50);
    constrained.sampling.temperature = 1.0;
    constrained.sampling.seed = Some(3);
    constrained.constraint = Some(ragd_engine::Constraint::new(Script {
        tokens: script.clone(),
        at: 0,
    }));
    let free = req(prompt(1, 5), 6);
    let (a, b) = (engine.submit(constrained).unwrap(), engine.submit(free).unwrap());
    let ((tokens, end), (free_tokens, _)) = tokio::join!(collect(a), collect(b));
    assert_eq!(tokens, script);
    assert!(
        matches!(
            end,
            GenerationEvent::Finished {
                reason: FinishReason::Stop,
                ..
            }
        ),
        "{end:?}"
    );
    assert_eq!(
        free_tokens,
        FakeGenerator::reference(VOCAB, &prompt(1, 5), 6, &[]),
        "its neighbour is unconstrained"
    );
}

/// One request of `tenant` run alone to its end: its tokens and usage.
async fn run_as(
    engine: &GenerationEngine,
    tenant: &str,
    prompt: Vec<u32>,
    max_tokens: usize,
) -> (Vec<u32>, Usage) {
    let stream = engine
        .submit_as(&TenantKey::new(tenant), req(prompt, max_tokens))
        .unwrap();
    match collect(stream).await {
        (tokens, GenerationEvent::Finished { usage, .. }) => (tokens, usage),
        (_, end) => panic!("{end:?}"),
    }
}

#[tokio::test]
async fn a_shared_prefix_is_prefilled_once_and_the_tokens_stay_the_same() {
    // A 1,000-token prefix (62 blocks of 16, 8 tokens over) and two
    // different questions, as RAG prompts are.
    let shared = prompt(7, 1000);
    let q1 = [&shared[..], &prompt(8, 12)].concat();
    let q2 = [&shared[..], &prompt(9, 20)].concat();
    let model = FakeGenerator::new(VOCAB, 2048, 16, 256);
    let probe = model.probe();
    let (engine, metrics) = spawn(model, limits(256, 8));
    let (t1, u1) = run_as(&engine, "acme", q1.clone(), 16).await;
    assert_eq!((u1.prompt_tokens, u1.cached_tokens), (1012, 0));
    let before = probe.steps().len();
    let (t2, u2) = run_as(&engine, "acme", q2.clone(), 16).await;
    assert_eq!((u2.prompt_tokens, u2.cached_tokens), (1020, 992));
    // The second prefill feeds only the 28 tokens past the cached blocks.
    let second = &probe.steps()[before..];
    assert_eq!(second[0], vec![(992, 28, true)]);
    assert!(
        second[1..].iter().all(|s| s.len() == 1 && s[0].1 == 1),
        "{second:?}"
    );
    // Tokens as without any cache: the reference, and an engine with the
    // prefix cache off.
    assert_eq!(t1, FakeGenerator::reference(VOCAB, &q1, 16, &[]));
    assert_eq!(t2, FakeGenerator::reference(VOCAB, &q2, 16, &[]));
    let off = GenerationLimits {
        prefix_cache: false,
        ..limits(256, 8)
    };
    let (uncached, _) = spawn(FakeGenerator::new(VOCAB, 2048, 16, 256), off);
    for (q, t) in [(&q1, &t1), (&q2, &t2)] {
        let (tokens, usage) = run_as(&uncached, "acme", q.clone(), 16).await;
        assert_eq!((&tokens, usage.cached_tokens), (t, 0));
    }
    assert_eq!(metrics.prefix_cache_queried_tokens.get(), 1012 + 1020);
    assert_eq!(metrics.prefix_cache_hit_tokens.get(), 992);
    // Both prompts' full blocks (62 shared, 1 each of their own, plus
    // their generated tokens' blocks) stay cached, held by nobody.
    eventually("kv_blocks_used", || metrics.kv_blocks_used.get(), 0).await;
    assert!(metrics.prefix_cache_blocks.get() >= 64);
}

#[tokio::test]
async fn a_tenant_gets_no_cached_tokens_from_another_tenants_prefix() {
    let shared = prompt(7, 200);
    let model = FakeGenerator::new(VOCAB, 512, 16, 64);
    let probe = model.probe();
    let (engine, metrics) = spawn(model, limits(256, 8));
    let (_, a) = run_as(&engine, "tenant-a", shared.clone(), 4).await;
    let before = probe.steps().len();
    let (tokens, b) = run_as(&engine, "tenant-b", shared.clone(), 4).await;
    assert_eq!((a.cached_tokens, b.cached_tokens), (0, 0));
    assert_eq!(probe.steps()[before][0], (0, 200, true), "B prefilled all of it");
    assert_eq!(tokens, FakeGenerator::reference(VOCAB, &shared, 4, &[]));
    // A request without a tenant is another salt; A's own is a hit.
    let (_, anonymous) = collect(engine.submit(req(shared.clone(), 4)).unwrap()).await;
    assert_eq!(anonymous, length(200, 4));
    let (_, a_again) = run_as(&engine, "tenant-a", shared.clone(), 4).await;
    assert_eq!(a_again.cached_tokens, 192);
    assert_eq!(metrics.prefix_cache_hit_tokens.get(), 192);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cache_smaller_than_the_prefixes_evicts_and_stays_correct() {
    // 24 blocks of 4 (96 slots); 12 prompts of 40 tokens over 3 prefixes
    // of 32, 4 at a time: cached blocks are evicted and reused while
    // others run, and every output is the reference.
    let model = FakeGenerator::new(VOCAB, 96, 4, 24).with_delay(Duration::from_micros(200));
    let (engine, metrics) = spawn(model, limits(32, 4));
    let prefixes: Vec<Vec<u32>> = (0..3).map(|i| prompt(20 + i, 32)).collect();
    let prompts: Vec<Vec<u32>> = (0..12)
        .map(|i| [&prefixes[i % 3][..], &prompt(40 + i as u32, 8)].concat())
        .collect();
    let streams = prompts
        .iter()
        .map(|p| ((), engine.submit(req(p.clone(), 12)).unwrap()))
        .collect();
    let (outs, _) = collect_each(streams).await;
    for (p, (tokens, end)) in prompts.iter().zip(outs) {
        assert_eq!(tokens, FakeGenerator::reference(VOCAB, p, 12, &[]));
        assert!(
            matches!(
                end,
                GenerationEvent::Finished {
                    reason: FinishReason::Length,
                    ..
                }
            ),
            "{end:?}"
        );
    }
    assert!(metrics.prefix_cache_hit_tokens.get() > 0);
    assert!(metrics.prefix_cache_evictions.get() > 0);
    eventually("kv_blocks_used", || metrics.kv_blocks_used.get(), 0).await;
}
