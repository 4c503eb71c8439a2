//! Concurrent load through a load balancer for the scale-out tests: writes
//! and reads from several client threads, each request's timing, status and
//! the replicas that nginx tried (its `X-Upstream` header, `$upstream_addr`),
//! so a test can tell which requests were on a replica when it died.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;
use serde_json::json;

/// The answering replica and those tried before it, from nginx's
/// `X-Upstream` (`A, B`: A failed, B answered).
pub fn upstreams(r: &Response) -> Vec<String> {
    r.headers()
        .get("x-upstream")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(", ").map(str::to_string).collect())
        .unwrap_or_default()
}

/// One request of a load phase.
pub struct Outcome {
    /// The document it wrote, for a write.
    pub write: Option<String>,
    pub start: Instant,
    pub end: Instant,
    /// None: no HTTP answer at all.
    pub status: Option<StatusCode>,
    /// The replicas nginx tried, the answering one last.
    pub upstreams: Vec<String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.is_success())
    }
    pub fn answered_by(&self) -> Option<&str> {
        self.upstreams.last().map(String::as_str)
    }
}

/// How much load: client threads, most requests in all, the collection
/// written to.
pub struct Plan<'a> {
    pub workers: usize,
    pub cap: usize,
    pub collection: &'a str,
}

/// `plan.workers` threads send writes (an upsert of one new document into
/// `plan.collection`) and reads (`GET /v1/models`) in turn through `base`,
/// each request with the next of `keys` (secrets); `during` runs on this
/// thread one second in, the load goes on for two more seconds or until
/// `plan.cap` requests. Returns every request's outcome.
pub fn run(http: &Client, base: &str, keys: &[String], plan: &Plan, during: impl FnOnce()) -> Vec<Outcome> {
    let stop = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..plan.workers)
            .map(|_| {
                s.spawn(|| {
                    let mut outcomes = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= plan.cap {
                            break;
                        }
                        let key = &keys[n % keys.len()];
                        let (write, request) = if n.is_multiple_of(2) {
                            let id = format!("doc-{n}");
                            let text = format!("Note {n}: shipment {} left the depot.", n * 7 % 101);
                            let body = json!({"documents": [{"id": id, "text": text}]});
                            let url = format!("{base}/v1/collections/{}/documents", plan.collection);
                            (Some(id), http.post(url).json(&body))
                        } else {
                            (None, http.get(format!("{base}/v1/models")))
                        };
                        let start = Instant::now();
                        let r = request.bearer_auth(key).send();
                        let end = Instant::now();
                        let (status, upstreams) = match &r {
                            Ok(r) => (Some(r.status()), upstreams(r)),
                            Err(_) => (None, vec![]),
                        };
                        outcomes.push(Outcome {
                            write,
                            start,
                            end,
                            status,
                            upstreams,
                        });
                    }
                    outcomes
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        during();
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("load worker"))
            .collect()
    })
}
