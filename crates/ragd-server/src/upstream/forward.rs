//! One chat request through a route's upstream targets: per target, bounded
//! attempts behind its breaker; the first good answer wins. A stream is
//! passed through chunk by chunk once the upstream accepted it, and is
//! never retried after that: a break ends it with an error event.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream::{BoxStream, StreamExt};
use serde_json::Value;
use tracing::Instrument;

use super::routing::{Upstream, Upstreams, SERVED_BY};
use crate::error::ApiError;

/// An answer from an upstream, ready to send.
pub struct Forwarded {
    /// The upstream's name (for `x-ragd-served-by`).
    pub served_by: String,
    pub answer: Answer,
}

pub enum Answer {
    /// A whole chat completion.
    Json(Value),
    /// An SSE stream being passed through.
    Stream(Body),
    /// The upstream refused the request itself (400, 413, 422): its
    /// answer goes to the client as is, as any other target would refuse it.
    Refused { status: StatusCode, body: Bytes },
}

impl Forwarded {
    /// The response, with `x-ragd-served-by`; `edit` may add to a JSON body.
    pub fn into_response(self, edit: impl FnOnce(&mut Value)) -> Response {
        let mut response = match self.answer {
            Answer::Json(mut body) => {
                edit(&mut body);
                axum::Json(body).into_response()
            }
            Answer::Stream(body) => (
                [
                    (header::CONTENT_TYPE, "text/event-stream"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                body,
            )
                .into_response(),
            Answer::Refused { status, body } => {
                (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
            }
        };
        if let Ok(name) = HeaderValue::from_str(&self.served_by) {
            response.headers_mut().insert(SERVED_BY, name);
        }
        response
    }
}

/// Why an attempt failed.
#[derive(Debug)]
enum Failure {
    Connect(String),
    Timeout,
    Overloaded {
        retry_after: Option<Duration>,
    },
    Server {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Refused for a reason of the upstream's own (401, 403, 404):
    /// not worth a retry there, but the next target may answer.
    Rejected(u16),
}

impl Failure {
    fn reason(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Timeout => "timeout",
            Self::Overloaded { .. } => "overloaded",
            Self::Server { .. } => "server_error",
            Self::Rejected(_) => "rejected",
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Overloaded { retry_after } | Self::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "could not connect ({e})"),
            Self::Timeout => f.write_str("no answer before the deadline"),
            Self::Overloaded { .. } => f.write_str("overloaded (429)"),
            Self::Server { status, .. } => write!(f, "failed ({status})"),
            Self::Rejected(status) => write!(f, "refused ({status})"),
        }
    }
}

impl Upstreams {
    /// Sends `body` (a chat completion request) to each of `targets` in
    /// turn until one answers. `from` names the target that failed before
    /// these (`local`), for the fallback count.
    pub async fn forward(
        &self,
        targets: &[Arc<Upstream>],
        body: &Value,
        stream: bool,
        mut from: Option<&str>,
    ) -> Result<Forwarded, ApiError> {
        let mut why = Vec::new();
        for up in targets {
            if !up.breaker.admit(Instant::now()) {
                why.push(format!("{}: circuit open", up.name));
                continue;
            }
            if let Some(from) = from {
                self.count_fallback(from, &up.name);
            }
            let mut retry = 0;
            loop {
                self.metrics.attempts.with_label_values(&[&up.name]).inc();
                let span = tracing::info_span!("upstream", upstream = %up.name, attempt = retry + 1, outcome = tracing::field::Empty);
                let outcome = self.attempt(up, body, stream).instrument(span.clone()).await;
                span.record(
                    "outcome",
                    outcome.as_ref().map_or_else(Failure::reason, |_| "answered"),
                );
                match outcome {
                    Ok(answer) => {
                        up.breaker.success();
                        self.show_state(up);
                        return Ok(Forwarded {
                            served_by: up.name.clone(),
                            answer,
                        });
                    }
                    Err(failure) => {
                        up.breaker.failure(Instant::now());
                        self.show_state(up);
                        (self.metrics.failures)
                            .with_label_values(&[&up.name, failure.reason()])
                            .inc();
                        tracing::warn!(upstream = %up.name, error = %failure, "upstream attempt failed");
                        why.push(format!("{}: {failure}", up.name));
                        retry += 1;
                        let again = match failure {
                            Failure::Rejected(_) => None,
                            _ => self.config.retry.delay(retry, failure.retry_after(), jitter()),
                        };
                        match again {
                            Some(wait) if up.breaker.admit(Instant::now()) => tokio::time::sleep(wait).await,
                            _ => break,
                        }
                    }
                }
            }
            from = Some(&up.name);
        }
        Err(ApiError::Unavailable(format!(
            "no generator could answer: {}",
            if why.is_empty() {
                "no target serves this model".to_string()
            } else {
                why.join("; ")
            }
        )))
    }

    fn show_state(&self, up: &Upstream) {
        (self.metrics.breaker_state)
            .with_label_values(&[&up.name])
            .set(up.breaker.state(Instant::now()).gauge());
    }

    async fn attempt(&self, up: &Arc<Upstream>, body: &Value, stream: bool) -> Result<Answer, Failure> {
        let deadline = self.config.timeout;
        // The upstream joins this request's trace.
        let mut trace = axum::http::HeaderMap::new();
        crate::trace_context::inject_current(&mut trace);
        let mut req = (self.client.post(format!("{}/chat/completions", up.base)))
            .headers(trace)
            .json(body);
        if let Some(key) = &up.key {
            req = req.bearer_auth(key);
        }
        let exchange = async {
            let response = req.send().await.map_err(|e| match e.is_timeout() {
                true => Failure::Timeout,
                false => Failure::Connect(e.to_string()),
            })?;
            let status = response.status();
            if status.is_success() && stream {
                return Ok(Answer::Stream(self.pass_through(up, response)));
            }
            let retry_after = (response.headers().get(header::RETRY_AFTER))
                .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let bytes = response
                .bytes()
                .await
                .map_err(|e| Failure::Connect(e.to_string()))?;
            match status.as_u16() {
                200..=299 => serde_json::from_slice(&bytes)
                    .map(Answer::Json)
                    .map_err(|_| Failure::Server {
                        status: status.as_u16(),
                        retry_after: None,
                    }),
                400 | 413 | 422 => Ok(Answer::Refused { status, body: bytes }),
                408 => Err(Failure::Timeout),
                429 => Err(Failure::Overloaded { retry_after }),
                s if s >= 500 => Err(Failure::Server {
                    status: s,
                    retry_after,
                }),
                s => Err(Failure::Rejected(s)),
            }
        };
        // A stream's deadline covers its start; then each chunk has one.
        tokio::time::timeout(deadline, exchange)
            .await
            .unwrap_or(Err(Failure::Timeout))
    }

    /// The upstream's SSE body, chunk by chunk. A break, a stall past the
    /// deadline or an end before `[DONE]` ends it with an error event.
    fn pass_through(&self, up: &Upstream, response: reqwest::Response) -> Body {
        struct Pass {
            chunks: BoxStream<'static, reqwest::Result<Bytes>>,
            saw_done: bool,
            ended: bool,
            /// The end of the previous chunk (`[DONE]` may straddle two).
            tail: Vec<u8>,
        }
        let idle = self.config.timeout;
        let failures = (self.metrics.failures).with_label_values(&[&up.name, "stream_interrupted"]);
        let name = up.name.clone();
        let start = Pass {
            chunks: response.bytes_stream().boxed(),
            saw_done: false,
            ended: false,
            tail: Vec::new(),
        };
        let stream = futures::stream::unfold(start, move |mut pass| {
            let (failures, name) = (failures.clone(), name.clone());
            async move {
                if pass.ended {
                    return None;
                }
                let why = match tokio::time::timeout(idle, pass.chunks.next()).await {
                    Ok(Some(Ok(bytes))) => {
                        pass.tail.extend_from_slice(&bytes);
                        pass.saw_done |= contains(&pass.tail, b"data: [DONE]");
                        let keep = pass.tail.len().saturating_sub(16);
                        pass.tail.drain(..keep);
                        return Some((Ok::<Bytes, Infallible>(bytes), pass));
                    }
                    Ok(None) if pass.saw_done => return None,
                    Ok(None) => "ended before [DONE]".to_string(),
                    Ok(Some(Err(e))) => format!("broke ({e})"),
                    Err(_) => "stalled past the deadline".to_string(),
                };
                failures.inc();
                tracing::warn!(upstream = %name, "upstream stream {why}");
                pass.ended = true;
                let event = serde_json::json!({"error": {
                    "message": format!("the stream from upstream `{name}` {why}; the answer is incomplete"),
                    "type": "server_error", "code": "upstream_stream_interrupted"}});
                Some((Ok(Bytes::from(format!("data: {event}\n\n"))), pass))
            }
        });
        Body::from_stream(stream)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A number in [0, 1) that differs per call (for retry jitter).
fn jitter() -> f64 {
    (uuid::Uuid::new_v4().as_u128() as u64) as f64 / (u64::MAX as f64 + 1.0)
}
