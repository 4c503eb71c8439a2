//! W3C trace context at the HTTP edge: a caller's `traceparent` (and
//! `tracestate`) becomes the parent of the `request` span, and every answer
//! carries a `traceparent` naming that span, so a client can find its trace.
//!
//! Both go through OpenTelemetry's global propagator, which `ragd serve`
//! sets (W3C trace context) only when it exports traces: without an OTLP
//! endpoint nothing is read or written here.

use axum::http::HeaderMap;
use axum::response::Response;
use opentelemetry::propagation::Injector;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes the caller's span (from `headers`) the parent of `span`, which
/// must be fresh (not yet entered), and records the trace id in its
/// `trace_id` field (so log lines in the request name the trace).
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    if parent.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed (no export).
        let _ = span.set_parent(parent);
    }
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

/// Adds the current span's `traceparent` to the answer (inside the
/// `request` span's layer, so the current span is the request's).
pub async fn traceparent_header(mut res: Response) -> Response {
    inject_current(res.headers_mut());
    res
}

/// Writes the current span as `traceparent` (and `tracestate`) into
/// `headers`: for an answer, or a request to another server that should
/// join this trace. Writes nothing when traces are not exported.
pub fn inject_current(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        let mut injector = NonEmpty(HeaderInjector(headers));
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut injector));
    }
}

/// Leaves out empty values (the propagator writes `tracestate` even when
/// the trace has none).
struct NonEmpty<'a>(HeaderInjector<'a>);

impl Injector for NonEmpty<'_> {
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.set(key, value);
        }
    }
}
