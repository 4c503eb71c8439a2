//! The load of `ragd bench generate` (and of `ragd bench node`'s
//! generation sweep): streaming completion requests to the server under
//! test, measured one by one, and one concurrency level of clients sending
//! them back to back. Connections and failures are handled by
//! [`crate::http`]: one connection per request, a retry of a connection
//! closed before the response, every failure counted by its cause.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use indicatif::ProgressBar;
use ragd_client::{parse_chunk, SseEvent, SseParser};
use serde_json::json;

use super::prompt::{prompt, rag_prompt, rag_question};
use super::report::LevelReport;
use crate::http::{self, Endpoint, ErrorCause, ErrorTally, RequestError};
use crate::stats::percentile;

/// The measurements of one request.
#[derive(Debug, Default, Clone)]
struct RequestStats {
    ttft: Option<f64>,
    /// Seconds per token between content chunks.
    itl: Vec<f64>,
    e2e: f64,
    completion_tokens: u64,
    prompt_tokens: Option<u64>,
    /// Prompt tokens the server's prefix cache held (when it says).
    cached_tokens: Option<u64>,
    /// Sends again after a connection closed before the response.
    retries: u32,
}

/// What every request asks of the server.
pub struct RequestShape {
    /// Tokens of sources shared by every request (0: none), and of each
    /// request's own text.
    pub prompt_tokens: [usize; 2],
    pub max_tokens: usize,
    /// Added to every request when set (structured outputs).
    pub response_format: Option<serde_json::Value>,
    /// RAG chat requests over this collection, with this `top_k`, instead
    /// of completions: the request's text is the question.
    pub rag: Option<(String, usize)>,
}

impl RequestShape {
    /// Plain completions: a prompt of its own for every request.
    pub fn completions(prompt_tokens: usize, max_tokens: usize) -> Self {
        Self {
            prompt_tokens: [0, prompt_tokens],
            max_tokens,
            response_format: None,
            rag: None,
        }
    }
}

/// The server under test and what every request asks of it.
pub struct Target {
    endpoint: Endpoint,
    model: String,
    shape: RequestShape,
    /// Differs per run (milliseconds of the clock): part of every request number.
    run: u64,
    next_id: AtomicU64,
}

impl Target {
    pub fn new(endpoint: Endpoint, model: String, shape: RequestShape) -> Self {
        Self {
            endpoint,
            model,
            shape,
            run: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64 % 1_000_000),
            next_id: AtomicU64::new(0),
        }
    }

    async fn one_request(&self) -> Result<RequestStats, RequestError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shape = &self.shape;
        let text = match shape.prompt_tokens {
            [0, own] => prompt(&format!("{}-{id}", self.run), own),
            [shared, own] => rag_prompt(self.run, id, shared, own),
        };
        let mut body = json!({
            "model": self.model,
            "max_tokens": shape.max_tokens,
            "temperature": 0,
            "stream": true,
            "stream_options": {"include_usage": true},
            "ignore_eos": true,
        });
        let path = match &shape.rag {
            None => {
                body["prompt"] = json!(text);
                "/v1/completions"
            }
            Some((collection, top_k)) => {
                body["messages"] = json!([{"role": "user", "content": rag_question(self.run, id)}]);
                body["rag"] = json!({"collection": collection, "top_k": top_k});
                "/v1/chat/completions"
            }
        };
        if let Some(format) = &shape.response_format {
            body["response_format"] = format.clone();
        }
        let t0 = Instant::now();
        let sent = http::send(|| self.endpoint.post(path).json(&body)).await?;
        let mut resp = sent.response;
        let mut parser = SseParser::default();
        let mut stats = RequestStats {
            retries: sent.retries,
            ..RequestStats::default()
        };
        let (mut gaps, mut chunks, mut last) = (Vec::new(), 0u64, None::<Instant>);
        let mut usage_tokens = None;
        let mut done = false;
        while !done {
            let bytes =
                (resp.chunk().await).map_err(|e| RequestError::from_reqwest(ErrorCause::of_body(&e), &e))?;
            let now = Instant::now();
            let events = match &bytes {
                Some(b) => parser.push(b),
                None => parser.finish(),
            };
            for ev in events {
                let payload = match ev {
                    SseEvent::Done => {
                        done = true;
                        break;
                    }
                    SseEvent::Data(p) => p,
                };
                let info =
                    parse_chunk(&payload).map_err(|e| RequestError::new(ErrorCause::BadResponse, e))?;
                if let Some(e) = info.error {
                    return Err(RequestError::new(ErrorCause::StreamError, e));
                }
                if info.completion_tokens.is_some() {
                    usage_tokens = info.completion_tokens;
                    stats.prompt_tokens = info.prompt_tokens;
                    stats.cached_tokens = info.cached_tokens;
                }
                if info.text.is_empty() {
                    continue;
                }
                chunks += 1;
                match last {
                    None => stats.ttft = Some((now - t0).as_secs_f64()),
                    Some(prev) => gaps.push((now - prev).as_secs_f64()),
                }
                last = Some(now);
            }
            if bytes.is_none() {
                break;
            }
        }
        stats.e2e = t0.elapsed().as_secs_f64();
        if chunks == 0 {
            return Err(RequestError::new(
                ErrorCause::BadResponse,
                "the stream carried no text",
            ));
        }
        stats.completion_tokens = usage_tokens.unwrap_or(chunks);
        // Chunks that carry several tokens: spread each gap over them.
        let per_gap = if stats.completion_tokens > chunks && !gaps.is_empty() {
            (stats.completion_tokens - 1) as f64 / gaps.len() as f64
        } else {
            1.0
        };
        stats.itl = gaps.into_iter().map(|g| g / per_gap).collect();
        Ok(stats)
    }
}

/// One concurrency level: an unmeasured warm-up request, then
/// `concurrency` clients sending `per_client` requests each back to back;
/// `progress` advances by one per request.
pub async fn run_level(
    target: Arc<Target>,
    concurrency: usize,
    per_client: usize,
    progress: &ProgressBar,
) -> LevelReport {
    if let Err(e) = target.one_request().await {
        progress.suspend(|| eprintln!("warm-up request failed: {e}"));
    }
    progress.inc(1);
    let t0 = Instant::now();
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            let (target, progress) = (target.clone(), progress.clone());
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    out.push(target.one_request().await);
                    progress.inc(1);
                }
                out
            })
        })
        .collect();
    let mut results = Vec::new();
    for c in clients {
        match c.await {
            Ok(rs) => results.extend(rs),
            Err(e) => results.push(Err(RequestError::new(
                ErrorCause::Other,
                format!("client task failed: {e}"),
            ))),
        }
    }
    let wall_s = t0.elapsed().as_secs_f64();
    summarize(concurrency, &results, wall_s)
}

/// The report of one level from its requests' results.
fn summarize(concurrency: usize, results: &[Result<RequestStats, RequestError>], wall_s: f64) -> LevelReport {
    let ms = |x: Option<f64>| x.map(|s| s * 1e3);
    let ok: Vec<&RequestStats> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let mut errors = ErrorTally::default();
    results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .for_each(|e| errors.add(e));
    let ttft: Vec<f64> = ok.iter().filter_map(|s| s.ttft).collect();
    let itl: Vec<f64> = ok.iter().flat_map(|s| s.itl.iter().copied()).collect();
    let e2e: Vec<f64> = ok.iter().map(|s| s.e2e).collect();
    let mean_of = |get: fn(&RequestStats) -> Option<u64>| {
        let xs: Vec<f64> = ok.iter().filter_map(|s| get(s).map(|x| x as f64)).collect();
        (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
    };
    LevelReport {
        concurrency,
        requests: results.len(),
        errors,
        retries: ok.iter().map(|s| u64::from(s.retries)).sum(),
        wall_s,
        output_tokens: ok.iter().map(|s| s.completion_tokens).sum(),
        prompt_tokens_mean: mean_of(|s| s.prompt_tokens),
        cached_tokens_mean: mean_of(|s| s.cached_tokens),
        ttft_ms: [ms(percentile(&ttft, 50.0)), ms(percentile(&ttft, 99.0))],
        itl_ms: [ms(percentile(&itl, 50.0)), ms(percentile(&itl, 99.0))],
        e2e_ms_p50: ms(percentile(&e2e, 50.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_server::{endpoint, sse_response, start};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_connection_costs_a_retry_not_an_error() {
        let stream = sse_response(&[
            r#"{"choices":[{"index":0,"text":"Hello"}]}"#,
            r#"{"choices":[{"index":0,"text":" there"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2}}"#,
            "[DONE]",
        ]);
        // Warm-up, a connection closed under the first request, then answers.
        let (addr, accepted) = start(vec![Some(stream.clone()), None, Some(stream)]).await;
        let target = Arc::new(Target::new(
            endpoint(addr),
            "m".into(),
            RequestShape::completions(8, 2),
        ));
        let report = run_level(target, 1, 2, &ProgressBar::hidden()).await;
        assert_eq!(
            (report.requests, report.errors.total(), report.retries),
            (2, 0, 1)
        );
        assert_eq!(report.output_tokens, 4);
        assert_eq!(report.prompt_tokens_mean, Some(7.0));
        assert!(report.ttft_ms[0].is_some() && report.itl_ms[0].is_some());
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
    }
}
