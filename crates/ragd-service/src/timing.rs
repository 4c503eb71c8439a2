//! Where a request's time went, stage by stage (guard, retrieve, prompt,
//! cache, ttft, decode), for the `Server-Timing` header. The HTTP edge
//! opens a [`Stages`] scope per request; the pipeline records into
//! whichever scope it runs in (nothing when there is none, e.g. in tests
//! of the service alone).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

tokio::task_local! {
    static STAGES: Stages;
}

/// The stage durations of one request; clones share them.
#[derive(Clone, Default)]
pub struct Stages(Arc<Mutex<Vec<(&'static str, Duration)>>>);

impl Stages {
    /// Runs `work` with this scope as the one stages record into.
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        STAGES.scope(self, work).await
    }

    /// The stages in the order they first ran; a stage that ran several
    /// times (the guard on input and on chunks) is summed.
    pub fn list(&self) -> Vec<(&'static str, Duration)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn add(&self, name: &'static str, took: Duration) {
        let mut stages = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match stages.iter_mut().find(|(n, _)| *n == name) {
            Some((_, sum)) => *sum += took,
            None => stages.push((name, took)),
        }
    }
}

/// Adds `took` to stage `name` of the current request, if it has a scope.
pub fn record(name: &'static str, took: Duration) {
    let _ = STAGES.try_with(|s| s.add(name, took));
}

/// Awaits `work`, recording its duration as stage `name`.
pub async fn timed<F: Future>(name: &'static str, work: F) -> F::Output {
    let start = Instant::now();
    let out = work.await;
    record(name, start.elapsed());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stages_record_into_their_scope_only() {
        record("outside", Duration::from_millis(1));
        let stages = Stages::default();
        stages
            .clone()
            .scope(async {
                record("guard", Duration::from_millis(2));
                timed("retrieve", async {}).await;
                record("guard", Duration::from_millis(3));
            })
            .await;
        let list = stages.list();
        assert_eq!(
            list.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            ["guard", "retrieve"]
        );
        assert_eq!(list[0].1, Duration::from_millis(5));
    }
}
