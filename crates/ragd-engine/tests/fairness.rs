//! Per-tenant fair queuing (security review, issue 10): one tenant's burst
//! must not refuse or delay every other tenant. Fake models: runs in
//! milliseconds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ragd_core::testing::FakeGenerator;
use ragd_core::TokenBatch;
use ragd_engine::sampling::SamplingParams;
use ragd_engine::{
    BatchLimits, BatchModel, BatchWorker, EngineError, GenerationEngine, GenerationEvent, GenerationLimits,
    GenerationMetrics, GenerationRequest, GenerationStream, TenantKey, WorkerMetrics,
};

const VOCAB: usize = 1000;

fn engine(model: FakeGenerator, queue_capacity: usize, per_tenant: Option<usize>) -> GenerationEngine {
    let limits = GenerationLimits {
        queue_capacity,
        per_tenant_queue_capacity: per_tenant,
        max_batch_tokens: 64,
        max_running: 1,
        prefix_cache: true,
    };
    GenerationEngine::spawn(Box::new(model), limits, GenerationMetrics::new("fake"))
}

fn req(seed: u32, max_tokens: usize) -> GenerationRequest {
    GenerationRequest {
        prompt: (0..4).map(|i| (seed * 131 + i * 17 + 5) % VOCAB as u32).collect(),
        max_tokens: Some(max_tokens),
        sampling: SamplingParams::default(),
        stop_tokens: vec![],
        ignore_eos: false,
        constraint: None,
        priority: 0,
    }
}

async fn first_token(s: &mut GenerationStream) {
    match tokio::time::timeout(Duration::from_secs(10), s.next()).await {
        Ok(Some(GenerationEvent::Token { .. })) => {}
        other => panic!("expected a token, got {other:?}"),
    }
}

/// Runs a stream to its end; true when it finished (not failed).
async fn finish(mut s: GenerationStream) -> bool {
    let fut = async {
        loop {
            match s.next().await {
                Some(GenerationEvent::Token { .. }) => {}
                Some(GenerationEvent::Finished { .. }) => return true,
                _ => return false,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("timed out")
}

fn is_tenant_share(r: &Result<GenerationStream, EngineError>, share: usize) -> bool {
    matches!(
        r,
        Err(EngineError::Overloaded {
            capacity,
            tenant_share: true,
            ..
        }) if *capacity == share
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_a_tenant_over_its_share_is_refused_while_another_is_admitted() {
    let model = FakeGenerator::new(VOCAB, 256, 4, 256).with_delay(Duration::from_millis(1));
    // 8 waiting slots, 2 per tenant; one sequence runs at a time.
    let engine = engine(model, 8, Some(2));
    let (a, b) = (TenantKey::new("a"), TenantKey::new("b"));
    let mut running = engine.submit_as(&a, req(1, 200)).unwrap();
    first_token(&mut running).await; // started: no longer waiting
    let a1 = engine.submit_as(&a, req(2, 3)).unwrap();
    let a2 = engine.submit_as(&a, req(3, 3)).unwrap();
    let refused = engine.submit_as(&a, req(4, 3));
    assert!(is_tenant_share(&refused, 2), "{:?}", refused.err());
    let msg = refused.err().unwrap().to_string();
    assert!(msg.contains("tenant"), "{msg}");
    // B (and an untenanted request) still get in while A is refused.
    let b1 = engine.submit_as(&b, req(5, 3)).unwrap();
    let anon = engine.submit(req(6, 3)).unwrap();
    assert!(is_tenant_share(&engine.submit_as(&a, req(7, 3)), 2));
    drop(running);
    for s in [a1, a2, b1, anon] {
        assert!(finish(s).await);
    }
    // A's slots came back once its requests started.
    assert!(finish(engine.submit_as(&a, req(8, 3)).unwrap()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_the_default_share_is_a_quarter_of_the_queue() {
    let model = FakeGenerator::new(VOCAB, 256, 4, 256).with_delay(Duration::from_millis(1));
    let engine = engine(model, 8, None);
    assert_eq!(engine.limits().per_tenant_capacity(), 2);
    let a = TenantKey::from("a");
    let mut running = engine.submit_as(&a, req(1, 200)).unwrap();
    first_token(&mut running).await;
    let _waiting: Vec<_> = (0..2).map(|i| engine.submit_as(&a, req(i, 3)).unwrap()).collect();
    assert!(is_tenant_share(&engine.submit_as(&a, req(9, 3)), 2));
    // The global capacity still bounds everyone.
    let _others: Vec<_> = (0..6)
        .map(|i| {
            engine
                .submit_as(&TenantKey::from(format!("t{i}")), req(i, 3))
                .unwrap()
        })
        .collect();
    match engine.submit_as(&TenantKey::from("late"), req(1, 3)) {
        Err(EngineError::Overloaded {
            capacity: 8,
            tenant_share: false,
            ..
        }) => {}
        other => panic!("expected a full queue, got {:?}", other.err()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generation_another_tenant_is_admitted_before_most_of_a_long_queue() {
    let model = FakeGenerator::new(VOCAB, 256, 4, 256).with_delay(Duration::from_micros(300));
    let engine = engine(model, 64, Some(32));
    let (a, b) = (TenantKey::new("a"), TenantKey::new("b"));
    // A's first request runs; everything after it waits (max_running 1),
    // so completion order is admission order.
    let mut blocker = engine.submit_as(&a, req(1, 40)).unwrap();
    first_token(&mut blocker).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let mut submit = |tenant: &TenantKey, name: String, seed: u32| {
        let s = engine.submit_as(tenant, req(seed, 2)).unwrap();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            assert!(finish(s).await);
            order.lock().unwrap().push(name);
        }));
    };
    for i in 0..20 {
        submit(&a, format!("a{i}"), 10 + i);
    }
    submit(&b, "b0".into(), 99);
    assert!(finish(blocker).await);
    for t in tasks {
        t.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    let b_at = order.iter().position(|n| n == "b0").unwrap();
    assert!(b_at <= 1, "B waited behind {b_at} of A's requests: {order:?}");
    // A's own requests keep their order.
    let a_order: Vec<_> = order.iter().filter(|n| n.starts_with('a')).cloned().collect();
    let want: Vec<_> = (0..20).map(|i| format!("a{i}")).collect();
    assert_eq!(a_order, want);
}

/// The token that makes [`Recorder`] sleep long (a request that holds the
/// model while others queue up).
const SLOW: u32 = 999;

/// A model that sleeps (`delay`, or 300 ms for a batch with [`SLOW`]),
/// then records the first token of each sequence in the order it ran them.
struct Recorder {
    delay: Duration,
    seen: Arc<Mutex<Vec<u32>>>,
}

impl BatchModel for Recorder {
    fn run(&mut self, batch: &TokenBatch) -> ragd_core::Result<Vec<Vec<f32>>> {
        let slow = batch.input_ids.contains(&SLOW);
        std::thread::sleep(if slow {
            Duration::from_millis(300)
        } else {
            self.delay
        });
        let mut seen = self.seen.lock().unwrap();
        Ok(batch
            .seqs()
            .map(|s| {
                seen.push(s[0]);
                vec![s[0] as f32]
            })
            .collect())
    }
}

fn recorder_worker(limits: BatchLimits, delay: Duration) -> (BatchWorker, Arc<Mutex<Vec<u32>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let model = Recorder {
        delay,
        seen: seen.clone(),
    };
    let (worker, _) = BatchWorker::spawn("rec", model, limits, WorkerMetrics::new("rec")).unwrap();
    (worker, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_a_tenant_over_its_share_is_refused_while_another_is_admitted() {
    let limits = BatchLimits {
        queue_capacity: 8,
        per_tenant_queue_capacity: Some(2),
        max_batch_tokens: 1,
        max_batch_seqs: 1,
    };
    let (worker, _) = recorder_worker(limits, Duration::from_millis(150));
    let a = worker.with_tenant(TenantKey::new("a"));
    assert_eq!(a.tenant().map(TenantKey::as_str), Some("a"));
    let mut handles = Vec::new();
    for i in 0..3 {
        let w = a.clone();
        handles.push(tokio::spawn(async move { w.run(vec![vec![i]]).await }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One of A's runs, two wait: A's next is refused, B's is not.
    let err = a.run(vec![vec![7]]).await.unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Overloaded {
                capacity: 2,
                tenant_share: true,
                ..
            }
        ),
        "{err:?}"
    );
    let err = worker
        .run_as(&TenantKey::new("a"), vec![vec![7]])
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        EngineError::Overloaded {
            tenant_share: true,
            ..
        }
    ));
    let b = worker.run_as(&TenantKey::new("b"), vec![vec![8]]).await.unwrap();
    assert_eq!(b, vec![vec![8.0]]);
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert_eq!(a.run(vec![vec![9]]).await.unwrap(), vec![vec![9.0]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_another_tenant_runs_before_most_of_a_long_queue() {
    let limits = BatchLimits {
        queue_capacity: 64,
        per_tenant_queue_capacity: Some(32),
        max_batch_tokens: 1,
        max_batch_seqs: 1,
    };
    let (worker, seen) = recorder_worker(limits, Duration::from_millis(2));
    let (a, b) = (TenantKey::new("a"), TenantKey::new("b"));
    // A's first request holds the model (300 ms) while A queues 20 more,
    // then B sends one: FIFO would run it after all of A's.
    let blocker = {
        let w = worker.clone();
        let a = a.clone();
        tokio::spawn(async move { w.run_as(&a, vec![vec![SLOW]]).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut tasks = Vec::new();
    for i in 0..20u32 {
        let w = worker.clone();
        let a = a.clone();
        tasks.push(tokio::spawn(async move { w.run_as(&a, vec![vec![i]]).await }));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let b_task = {
        let w = worker.clone();
        tokio::spawn(async move { w.run_as(&b, vec![vec![500]]).await })
    };
    b_task.await.unwrap().unwrap();
    blocker.await.unwrap().unwrap();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], SLOW, "{seen:?}");
    let b_at = seen.iter().position(|&t| t == 500).unwrap();
    let a_before = seen[1..b_at].len();
    assert!(
        a_before <= 1,
        "B ran after {a_before} of A's 20 queued requests: {seen:?}"
    );
    assert_eq!(seen.len(), 22);
}
