//! Dynamic batching with fake models: runs in milliseconds.

use std::time::Duration;

use ragd_core::testing::{FakeClassifier, FakeEmbedder};
use ragd_core::{Classifier, Embedder, ModelError, TokenBatch};
use ragd_engine::{BatchLimits, BatchModel, BatchWorker, EngineError, WorkerMetrics};

fn embedder_worker(limits: BatchLimits) -> (BatchWorker, WorkerMetrics) {
    let metrics = WorkerMetrics::new("fake");
    let model: Box<dyn Embedder> = Box::new(FakeEmbedder::new(8, 64));
    let (w, _) = BatchWorker::spawn("fake", model, limits, metrics.clone()).unwrap();
    (w, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_answered_correctly_and_batched() {
    let (worker, metrics) = embedder_worker(BatchLimits::default());
    let tasks: Vec<_> = (0..200u32)
        .map(|i| {
            let w = worker.clone();
            tokio::spawn(async move {
                let seq = vec![i, i + 1, i * 3];
                let out = w.run(vec![seq.clone()]).await.unwrap();
                assert_eq!(out, vec![FakeEmbedder::vector_for(8, &seq)]);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let batches = metrics.batch_size.get_sample_count();
    assert_eq!(metrics.batch_size.get_sample_sum() as u64, 200);
    assert!(
        batches < 200,
        "expected some batches > 1, got {batches} batches for 200 requests"
    );
    assert_eq!(metrics.queue_depth.get(), 0);
}

#[tokio::test]
async fn multi_sequence_requests_get_their_own_vectors_in_order() {
    let (worker, _) = embedder_worker(BatchLimits::default());
    let seqs: Vec<Vec<u32>> = (0..5).map(|i| vec![i; (i + 1) as usize]).collect();
    let out = worker.run(seqs.clone()).await.unwrap();
    let want: Vec<_> = seqs.iter().map(|s| FakeEmbedder::vector_for(8, s)).collect();
    assert_eq!(out, want);
}

/// A model that sleeps, so that requests pile up behind it.
struct Slow(Duration);
impl BatchModel for Slow {
    fn run(&mut self, batch: &TokenBatch) -> ragd_core::Result<Vec<Vec<f32>>> {
        std::thread::sleep(self.0);
        Ok(vec![vec![batch.len() as f32]; batch.len()])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_with_overloaded() {
    let limits = BatchLimits {
        queue_capacity: 2,
        per_tenant_queue_capacity: None,
        max_batch_tokens: 1,
        max_batch_seqs: 1,
    };
    let metrics = WorkerMetrics::new("slow");
    let (worker, _) =
        BatchWorker::spawn("slow", Slow(Duration::from_millis(200)), limits, metrics.clone()).unwrap();
    assert_eq!(metrics.queue.capacity.get(), 2);
    let mut handles = Vec::new();
    for _ in 0..3 {
        let w = worker.clone();
        handles.push(tokio::spawn(async move { w.run(vec![vec![1]]).await }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One running, two waiting: the next is refused at once.
    let err = worker.run(vec![vec![1]]).await.unwrap_err();
    assert!(
        matches!(err, EngineError::Overloaded { capacity: 2, .. }),
        "{err:?}"
    );
    assert_eq!(metrics.queue.rejections.with_label_values(&["full"]).get(), 1);
    for h in handles {
        h.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_requests_are_skipped() {
    let limits = BatchLimits {
        max_batch_seqs: 1,
        ..BatchLimits::default()
    };
    let metrics = WorkerMetrics::new("slow");
    let (worker, _) =
        BatchWorker::spawn("slow", Slow(Duration::from_millis(100)), limits, metrics.clone()).unwrap();
    let busy = {
        let w = worker.clone();
        tokio::spawn(async move { w.run(vec![vec![1]]).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    // These time out (the client "disconnects") while the first one runs.
    for _ in 0..5 {
        let r = tokio::time::timeout(Duration::from_millis(10), worker.run(vec![vec![2]])).await;
        assert!(r.is_err());
    }
    busy.await.unwrap().unwrap();
    let after = worker.run(vec![vec![3]]).await.unwrap();
    assert_eq!(after, vec![vec![1.0]]);
    // Only the first and the last request reached the model.
    assert_eq!(metrics.batch_size.get_sample_count(), 2);
}

/// A model that panics on a marker token.
struct Panicky;
impl BatchModel for Panicky {
    fn run(&mut self, batch: &TokenBatch) -> ragd_core::Result<Vec<Vec<f32>>> {
        assert!(!batch.input_ids.contains(&666), "boom");
        Ok(vec![vec![0.0]; batch.len()])
    }
}

#[tokio::test]
async fn a_model_panic_fails_one_batch_not_the_worker() {
    let (worker, _) =
        BatchWorker::spawn("p", Panicky, BatchLimits::default(), WorkerMetrics::new("p")).unwrap();
    let err = worker.run(vec![vec![666]]).await.unwrap_err();
    assert!(
        matches!(err, EngineError::Model(ModelError::Inference(_))),
        "{err:?}"
    );
    assert_eq!(worker.run(vec![vec![1]]).await.unwrap(), vec![vec![0.0]]);
}

#[tokio::test]
async fn classifier_workers_return_probabilities() {
    let model: Box<dyn Classifier> = Box::new(FakeClassifier::new(7, 16));
    let (worker, _) =
        BatchWorker::spawn("g", model, BatchLimits::default(), WorkerMetrics::new("g")).unwrap();
    let out = worker.run(vec![vec![1, 2], vec![7]]).await.unwrap();
    assert_eq!(out, vec![vec![0.9, 0.1], vec![0.1, 0.9]]);
}
