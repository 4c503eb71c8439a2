//! The load of `ragd bench generate`: streaming completion requests to the
//! server under test, measured one by one, and one concurrency level of
//! clients sending them back to back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ragd_client::{parse_chunk, SseEvent, SseParser};
use serde_json::json;

use super::prompt::{prompt, rag_prompt, rag_question};
use super::report::LevelReport;
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
}

/// What every request asks of the server.
pub(super) struct RequestShape {
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

/// The server under test and what every request asks of it.
pub(super) struct Target {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
    model: String,
    shape: RequestShape,
    /// Differs per run (milliseconds of the clock): part of every request number.
    run: u64,
    next_id: AtomicU64,
}

impl Target {
    pub(super) fn new(
        client: reqwest::Client,
        url: String,
        api_key: Option<String>,
        model: String,
        shape: RequestShape,
    ) -> Self {
        Self {
            client,
            url,
            api_key,
            model,
            shape,
            run: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64 % 1_000_000),
            next_id: AtomicU64::new(0),
        }
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let req = self.client.post(format!("{}{path}", self.url));
        match &self.api_key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }

    async fn one_request(&self) -> anyhow::Result<RequestStats> {
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
        let mut resp = self.post(path).json(&body).send().await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            anyhow::bail!("HTTP {status}: {}", text.chars().take(300).collect::<String>());
        }
        let mut parser = SseParser::default();
        let mut stats = RequestStats::default();
        let (mut gaps, mut chunks, mut last) = (Vec::new(), 0u64, None::<Instant>);
        let mut usage_tokens = None;
        let mut done = false;
        while !done {
            let bytes = resp.chunk().await?;
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
                let info = parse_chunk(&payload)?;
                if let Some(e) = info.error {
                    anyhow::bail!("error in stream: {e}");
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
            anyhow::bail!("the stream carried no text");
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

pub(super) async fn run_level(target: Arc<Target>, concurrency: usize, per_client: usize) -> LevelReport {
    if let Err(e) = target.one_request().await {
        eprintln!("warm-up request failed: {e:#}");
    }
    let t0 = Instant::now();
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    out.push(target.one_request().await);
                }
                out
            })
        })
        .collect();
    let mut results = Vec::new();
    for c in clients {
        match c.await {
            Ok(rs) => results.extend(rs),
            Err(e) => results.push(Err(anyhow::anyhow!("client task failed: {e}"))),
        }
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let ms = |x: Option<f64>| x.map(|s| s * 1e3);
    let ok: Vec<&RequestStats> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
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
        errors: results.len() - ok.len(),
        first_error: results
            .iter()
            .find_map(|r| r.as_ref().err().map(|e| format!("{e:#}"))),
        wall_s,
        output_tokens: ok.iter().map(|s| s.completion_tokens).sum(),
        prompt_tokens_mean: mean_of(|s| s.prompt_tokens),
        cached_tokens_mean: mean_of(|s| s.cached_tokens),
        ttft_ms: [ms(percentile(&ttft, 50.0)), ms(percentile(&ttft, 99.0))],
        itl_ms: [ms(percentile(&itl, 50.0)), ms(percentile(&itl, 99.0))],
        e2e_ms_p50: ms(percentile(&e2e, 50.0)),
    }
}
