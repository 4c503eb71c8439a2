//! A failed request and its cause, named so that a report can count them.

use std::fmt;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorCause {
    /// No connection could be opened (refused, unreachable).
    Connect,
    /// The connection closed before any of the response arrived, again
    /// after a retry on a new connection.
    ClosedBeforeResponse,
    /// The request took longer than the benchmark's timeout.
    Timeout,
    /// The server answered with this error status (429 and 503: it refused
    /// the load).
    Status(u16),
    /// The connection broke while the response streamed.
    StreamCut,
    /// The stream carried an error event.
    StreamError,
    /// The answer was not what the API promises (JSON, SSE, a text).
    BadResponse,
    Other,
}

impl ErrorCause {
    /// The stable name of the cause in reports and JSON.
    pub fn key(self) -> String {
        match self {
            Self::Connect => "connect".into(),
            Self::ClosedBeforeResponse => "closed_before_response".into(),
            Self::Timeout => "timeout".into(),
            Self::Status(code) => format!("http_{code}"),
            Self::StreamCut => "stream_cut".into(),
            Self::StreamError => "stream_error".into(),
            Self::BadResponse => "bad_response".into(),
            Self::Other => "other".into(),
        }
    }

    /// Whether the server refused the load (what caps a concurrency sweep).
    pub fn is_refusal(self) -> bool {
        matches!(self, Self::Status(429 | 503))
    }

    /// The cause of an error of `send()`, before any of the response.
    pub fn of_send(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_connect() {
            Self::Connect
        } else if closed_early(e) {
            Self::ClosedBeforeResponse
        } else {
            Self::Other
        }
    }

    /// The cause of an error while reading the response body.
    pub fn of_body(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_decode() {
            Self::BadResponse
        } else {
            Self::StreamCut
        }
    }
}

/// Whether the connection was closed or reset under the request: hyper's
/// "connection closed before message completed" or "canceled", or a reset,
/// aborted or broken socket.
fn closed_early(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() {
                return true;
            }
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return true;
            }
        }
        source = err.source();
    }
    false
}

/// A failed request: its cause and what was said about it.
#[derive(Debug, Clone)]
pub struct RequestError {
    pub cause: ErrorCause,
    pub detail: String,
}

impl RequestError {
    pub fn new(cause: ErrorCause, detail: impl fmt::Display) -> Self {
        Self {
            cause,
            detail: detail.to_string(),
        }
    }

    /// From a reqwest error, with its whole chain of sources.
    pub fn from_reqwest(cause: ErrorCause, e: &reqwest::Error) -> Self {
        Self::new(cause, chain(e))
    }
}

/// An error and its sources, `: `-separated.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.cause.key(), self.detail)
    }
}

impl std::error::Error for RequestError {}
