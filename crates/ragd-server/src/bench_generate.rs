//! `ragd bench generate`: a load generator for any OpenAI-compatible
//! completions endpoint (ragd, llama.cpp's `llama-server`, vLLM, ...).
//!
//! For each concurrency level C, C clients each send `--requests-per-client`
//! streaming `POST /v1/completions` requests back to back, after one
//! unmeasured warm-up request. Every request asks for exactly `--max-tokens`
//! tokens (`ignore_eos`, a llama.cpp and vLLM extension) from a
//! deterministic English prompt of about `--prompt-tokens` tokens that starts
//! with its request number, so prompt caches cannot serve it.
//!
//! Measured per request: time to first token (request sent to the first
//! chunk with text), the gaps between content chunks (inter-token latency;
//! a chunk that carries several tokens has its gap divided among them) and
//! the end-to-end time. Output tokens come from the final `usage` chunk
//! (`stream_options.include_usage`), else from the number of content chunks.
//! `benches/generate_vs_llama_server.sh` runs it against ragd and
//! llama-server in turn.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};

#[derive(Debug, Clone, Args)]
pub struct GenerateBenchArgs {
    /// Base URL of the server (without `/v1`).
    #[arg(long, env = "RAGD_BENCH_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Bearer token sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "RAGD_BENCH_API_KEY")]
    pub api_key: Option<String>,
    /// Model name; default: the generator (else the first id) of `GET /v1/models`.
    #[arg(long, env = "RAGD_BENCH_MODEL")]
    pub model: Option<String>,
    /// Concurrency levels (clients), comma-separated.
    #[arg(
        long,
        env = "RAGD_BENCH_CONCURRENCY",
        value_delimiter = ',',
        default_value = "1,4,16"
    )]
    pub concurrency: Vec<usize>,
    /// Requests each client sends back to back.
    #[arg(long, env = "RAGD_BENCH_REQUESTS_PER_CLIENT", default_value_t = 4)]
    pub requests_per_client: usize,
    /// Approximate prompt length in tokens (about 0.87 English words per token).
    #[arg(long, env = "RAGD_BENCH_PROMPT_TOKENS", default_value_t = 128)]
    pub prompt_tokens: usize,
    /// Tokens to generate per request (`max_tokens`, with `ignore_eos`).
    #[arg(long, env = "RAGD_BENCH_MAX_TOKENS", default_value_t = 128)]
    pub max_tokens: usize,
    /// Write every level as JSON to this file (`-` for standard output).
    #[arg(long, env = "RAGD_BENCH_JSON_OUT")]
    pub json: Option<PathBuf>,
    /// Name of the server under test in the table and the JSON (default: the URL).
    #[arg(long, env = "RAGD_BENCH_LABEL")]
    pub label: Option<String>,
    /// Seconds one request may take before it counts as an error.
    #[arg(long, env = "RAGD_BENCH_TIMEOUT_SECONDS", default_value_t = 600)]
    pub timeout_seconds: u64,
}

/// One event of a `text/event-stream` body, as OpenAI-compatible servers send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    /// The payload of a `data:` line (a JSON object for OpenAI servers).
    Data(String),
    /// `data: [DONE]`: the end of the stream.
    Done,
}

/// Incremental Server-Sent Events parser: bytes in, `data:` payloads out.
/// Lines may be split anywhere across chunks (also inside a UTF-8
/// character). Comments, `event:`/`id:` fields and blank lines are skipped;
/// each `data:` line is its own event (OpenAI servers never split one JSON
/// object across several `data:` lines).
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let line = &self.buf[start..start + nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(payload) = line.strip_prefix(b"data:") {
                let payload = payload.strip_prefix(b" ").unwrap_or(payload);
                let text = String::from_utf8_lossy(payload).trim_end().to_string();
                if text == "[DONE]" {
                    events.push(SseEvent::Done);
                } else if !text.is_empty() {
                    events.push(SseEvent::Data(text));
                }
            }
            start += nl + 1;
        }
        self.buf.drain(..start);
        events
    }

    /// The unterminated last line, as an event, at the end of the body.
    pub fn finish(&mut self) -> Vec<SseEvent> {
        if self.buf.is_empty() {
            return Vec::new();
        }
        self.push(b"\n")
    }
}

/// What one streamed chunk says: its text (completions' `choices[0].text`,
/// or chat's `choices[0].delta.content`), the usage if it carries one, and
/// an error if the server sent one in-stream.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ChunkInfo {
    pub text: String,
    pub completion_tokens: Option<u64>,
    pub prompt_tokens: Option<u64>,
    pub error: Option<String>,
}

pub fn parse_chunk(payload: &str) -> anyhow::Result<ChunkInfo> {
    let v: Value = serde_json::from_str(payload).with_context(|| format!("bad SSE payload: {payload}"))?;
    let mut info = ChunkInfo::default();
    if let Some(err) = v.get("error") {
        info.error = Some(
            err.get("message")
                .and_then(Value::as_str)
                .unwrap_or(&err.to_string())
                .to_string(),
        );
    }
    if let Some(c) = v["choices"].as_array().and_then(|c| c.first()) {
        let text = c["text"].as_str().or_else(|| c["delta"]["content"].as_str());
        info.text = text.unwrap_or_default().to_string();
    }
    let usage = &v["usage"];
    info.completion_tokens = usage["completion_tokens"].as_u64();
    info.prompt_tokens = usage["prompt_tokens"].as_u64();
    Ok(info)
}

/// Percentile `p` (0-100) with linear interpolation between closest ranks
/// (NumPy's default); `None` for no samples.
pub fn percentile(xs: &[f64], p: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (p.clamp(0.0, 100.0) / 100.0) * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (rank - lo as f64))
}

const WORDS: &str = "Retrieval augmented generation answers a question in two steps. First a search \
    engine finds the passages of a document collection that are closest in meaning to the question, \
    using dense vectors from an embedding model and an approximate nearest neighbour index. Then a \
    language model reads those passages together with the question and writes an answer that cites \
    them. The quality of the answer depends on both steps: a passage that is never retrieved cannot \
    be used, and a model that ignores its context will invent facts. Engineers therefore measure \
    recall of the retriever, faithfulness of the generator and the latency of the whole pipeline, \
    because users notice a slow first word more than a slow last one. Batching many requests \
    together keeps the hardware busy, while streaming tokens as they are produced keeps each user \
    informed that work is progressing.";

/// Words per token of [`WORDS`]: SmolLM2's tokenizer (Llama-style BPE)
/// counts 110 tokens for a 96-word prompt, so 0.87 words per token lands
/// near the requested length; other tokenizers differ by some percent.
const WORDS_PER_TOKEN: f64 = 0.87;

/// The prompt of request `id`: its number, then about `tokens` tokens of
/// English, the same text for every request after the number. `id` includes
/// a per-run prefix so a server's prompt cache does not serve a rerun either.
pub fn prompt(id: &str, tokens: usize) -> String {
    let n_words = ((tokens as f64) * WORDS_PER_TOKEN).round().max(1.0) as usize;
    let mut out = format!("Request {id}.");
    for w in WORDS.split_whitespace().cycle().take(n_words.saturating_sub(2)) {
        out.push(' ');
        out.push_str(w);
    }
    out
}

/// The measurements of one request.
#[derive(Debug, Default, Clone)]
struct RequestStats {
    ttft: Option<f64>,
    /// Seconds per token between content chunks.
    itl: Vec<f64>,
    e2e: f64,
    completion_tokens: u64,
    prompt_tokens: Option<u64>,
}

struct Target {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
    model: String,
    prompt_tokens: usize,
    max_tokens: usize,
    /// Differs per run (milliseconds of the clock): part of every request number.
    run: u64,
    next_id: AtomicU64,
}

impl Target {
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let req = self.client.post(format!("{}{path}", self.url));
        match &self.api_key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }

    async fn one_request(&self) -> anyhow::Result<RequestStats> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({
            "model": self.model,
            "prompt": prompt(&format!("{}-{id}", self.run), self.prompt_tokens),
            "max_tokens": self.max_tokens,
            "temperature": 0,
            "stream": true,
            "stream_options": {"include_usage": true},
            "ignore_eos": true,
        });
        let t0 = Instant::now();
        let mut resp = self.post("/v1/completions").json(&body).send().await?;
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

/// The report of one concurrency level.
#[derive(Debug, Clone)]
pub struct LevelReport {
    pub concurrency: usize,
    pub requests: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub wall_s: f64,
    pub output_tokens: u64,
    pub prompt_tokens_mean: Option<f64>,
    pub ttft_ms: [Option<f64>; 2],
    pub itl_ms: [Option<f64>; 2],
    pub e2e_ms_p50: Option<f64>,
}

impl LevelReport {
    pub fn tokens_per_second(&self) -> f64 {
        self.output_tokens as f64 / self.wall_s
    }

    pub fn to_json(&self) -> Value {
        json!({
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "first_error": self.first_error,
            "wall_s": self.wall_s,
            "output_tokens": self.output_tokens,
            "output_tokens_per_s": self.tokens_per_second(),
            "prompt_tokens_mean": self.prompt_tokens_mean,
            "ttft_p50_ms": self.ttft_ms[0],
            "ttft_p99_ms": self.ttft_ms[1],
            "itl_p50_ms": self.itl_ms[0],
            "itl_p99_ms": self.itl_ms[1],
            "e2e_p50_ms": self.e2e_ms_p50,
        })
    }
}

async fn run_level(target: Arc<Target>, concurrency: usize, per_client: usize) -> LevelReport {
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
    let prompts: Vec<f64> = ok
        .iter()
        .filter_map(|s| s.prompt_tokens.map(|p| p as f64))
        .collect();
    LevelReport {
        concurrency,
        requests: results.len(),
        errors: results.len() - ok.len(),
        first_error: results
            .iter()
            .find_map(|r| r.as_ref().err().map(|e| format!("{e:#}"))),
        wall_s,
        output_tokens: ok.iter().map(|s| s.completion_tokens).sum(),
        prompt_tokens_mean: (!prompts.is_empty()).then(|| prompts.iter().sum::<f64>() / prompts.len() as f64),
        ttft_ms: [ms(percentile(&ttft, 50.0)), ms(percentile(&ttft, 99.0))],
        itl_ms: [ms(percentile(&itl, 50.0)), ms(percentile(&itl, 99.0))],
        e2e_ms_p50: ms(percentile(&e2e, 50.0)),
    }
}

pub(crate) async fn first_model(
    client: &reqwest::Client,
    url: &str,
    api_key: Option<&str>,
) -> anyhow::Result<String> {
    let mut req = client.get(format!("{url}/v1/models"));
    if let Some(k) = api_key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.with_context(|| format!("GET {url}/v1/models"))?;
    let status = resp.status();
    let v: Value = resp
        .json()
        .await
        .with_context(|| format!("GET {url}/v1/models: not JSON"))?;
    anyhow::ensure!(status.is_success(), "GET {url}/v1/models: HTTP {status}: {v}");
    // ragd lists every model with its `kind`: take its generator; other
    // servers list only generators.
    let models = v["data"].as_array().cloned().unwrap_or_default();
    let generator = models
        .iter()
        .find(|m| m["kind"] == "generator")
        .or(models.first());
    generator
        .and_then(|m| m["id"].as_str())
        .map(str::to_string)
        .with_context(|| format!("GET {url}/v1/models lists no model; pass --model"))
}

fn fmt_ms(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

pub fn print_table(label: &str, levels: &[LevelReport]) {
    println!(
        "{:<14} {:>4} {:>5} {:>4} {:>8} {:>9} {:>10} {:>10} {:>9} {:>9} {:>10}",
        "server",
        "conc",
        "reqs",
        "errs",
        "wall_s",
        "tok/s",
        "ttft_p50",
        "ttft_p99",
        "itl_p50",
        "itl_p99",
        "e2e_p50"
    );
    for l in levels {
        println!(
            "{:<14} {:>4} {:>5} {:>4} {:>8.2} {:>9.1} {:>10} {:>10} {:>9} {:>9} {:>10}",
            label,
            l.concurrency,
            l.requests,
            l.errors,
            l.wall_s,
            l.tokens_per_second(),
            fmt_ms(l.ttft_ms[0]),
            fmt_ms(l.ttft_ms[1]),
            fmt_ms(l.itl_ms[0]),
            fmt_ms(l.itl_ms[1]),
            fmt_ms(l.e2e_ms_p50),
        );
    }
    println!("(latencies in ms; tok/s = completion tokens of all requests / wall time)");
    for l in levels {
        if let Some(e) = &l.first_error {
            println!("concurrency {}: first error: {e}", l.concurrency);
        }
    }
}

pub fn run_generate(args: GenerateBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.concurrency.is_empty() && !args.concurrency.contains(&0),
        "--concurrency needs levels of at least 1"
    );
    let max_c = args.concurrency.iter().copied().max().unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let url = args.url.trim_end_matches('/').trim_end_matches("/v1").to_string();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(max_c + 1)
            .timeout(Duration::from_secs(args.timeout_seconds))
            .build()?;
        let model = match args.model {
            Some(m) => m,
            None => first_model(&client, &url, args.api_key.as_deref()).await?,
        };
        let label = args.label.unwrap_or_else(|| url.clone());
        eprintln!(
            "bench generate: {url} model `{model}`, {} prompt tokens, {} new tokens, {} requests per client",
            args.prompt_tokens, args.max_tokens, args.requests_per_client
        );
        let target = Arc::new(Target {
            client,
            url: url.clone(),
            api_key: args.api_key,
            model: model.clone(),
            prompt_tokens: args.prompt_tokens,
            max_tokens: args.max_tokens,
            run: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64 % 1_000_000),
            next_id: AtomicU64::new(0),
        });
        let mut levels = Vec::new();
        for &c in &args.concurrency {
            eprintln!("bench generate: concurrency {c}");
            let report = run_level(target.clone(), c, args.requests_per_client.max(1)).await;
            eprintln!(
                "bench generate: concurrency {c}: {:.1} tok/s, {} errors",
                report.tokens_per_second(),
                report.errors
            );
            levels.push(report);
        }
        print_table(&label, &levels);
        if let Some(path) = &args.json {
            let out = json!({
                "label": label,
                "url": url,
                "model": model,
                "prompt_tokens": args.prompt_tokens,
                "max_tokens": args.max_tokens,
                "requests_per_client": args.requests_per_client,
                "levels": levels.iter().map(LevelReport::to_json).collect::<Vec<_>>(),
            });
            let text = serde_json::to_string_pretty(&out)?;
            if path.as_os_str() == "-" {
                println!("{text}");
            } else {
                std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &str) -> SseEvent {
        SseEvent::Data(s.to_string())
    }

    #[test]
    fn sse_lines_split_across_chunks() {
        let mut p = SseParser::default();
        assert_eq!(p.push(b"data: {\"a\""), vec![]);
        assert_eq!(p.push(b":1}\n\nda"), vec![data("{\"a\":1}")]);
        assert_eq!(
            p.push(b"ta: {\"b\":2}\r\n\r\n: keep-alive\n"),
            vec![data("{\"b\":2}")]
        );
        assert_eq!(
            p.push(b"event: x\ndata:{\"c\":3}\n\ndata: [DONE]\n\n"),
            vec![data("{\"c\":3}"), SseEvent::Done]
        );
    }

    #[test]
    fn sse_split_inside_utf8_and_unterminated_end() {
        let text = "data: {\"t\":\"é\"}\n".as_bytes();
        let mut p = SseParser::default();
        let cut = text.iter().position(|&b| b == 0xc3).unwrap() + 1;
        assert_eq!(p.push(&text[..cut]), vec![]);
        assert_eq!(p.push(&text[cut..]), vec![data("{\"t\":\"é\"}")]);
        assert_eq!(p.push(b"data: [DONE]"), vec![]);
        assert_eq!(p.finish(), vec![SseEvent::Done]);
        assert_eq!(p.finish(), vec![]);
    }

    #[test]
    fn chunk_text_usage_and_errors() {
        let c = parse_chunk(r#"{"choices":[{"text":"Hello","index":0,"finish_reason":null}]}"#).unwrap();
        assert_eq!((c.text.as_str(), c.completion_tokens), ("Hello", None));
        let chat = parse_chunk(r#"{"choices":[{"delta":{"content":" world"}}]}"#).unwrap();
        assert_eq!(chat.text, " world");
        // The usage chunk of `stream_options.include_usage` has empty choices.
        let u =
            parse_chunk(r#"{"choices":[],"usage":{"prompt_tokens":130,"completion_tokens":128}}"#).unwrap();
        assert_eq!(
            (u.text.as_str(), u.completion_tokens, u.prompt_tokens),
            ("", Some(128), Some(130))
        );
        let e = parse_chunk(r#"{"error":{"message":"boom","type":"server_error"}}"#).unwrap();
        assert_eq!(e.error.as_deref(), Some("boom"));
        assert!(parse_chunk("not json").is_err());
    }

    #[test]
    fn percentiles_interpolate() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        let xs = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&xs, 50.0), Some(3.0));
        assert_eq!(percentile(&xs, 0.0), Some(1.0));
        assert_eq!(percentile(&xs, 100.0), Some(5.0));
        assert_eq!(percentile(&xs, 25.0), Some(2.0));
        let p99 = percentile(&xs, 99.0).unwrap();
        assert!((p99 - 4.96).abs() < 1e-9, "{p99}");
        assert_eq!(percentile(&[1.0, 2.0], 50.0), Some(1.5));
    }

    #[test]
    fn prompts_differ_and_have_the_requested_length() {
        let (a, b) = (prompt("7-0", 128), prompt("7-1", 128));
        assert_ne!(a, b);
        assert_eq!(a.split_whitespace().count(), 111);
        assert!(a.starts_with("Request 7-0. Retrieval"));
        assert_eq!(prompt("3", 1), "Request 3.");
    }
}
