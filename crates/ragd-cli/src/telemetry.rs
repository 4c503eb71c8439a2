//! Structured logs (`RUST_LOG` filters, text or JSON lines) and, when an
//! OTLP endpoint is set, OpenTelemetry traces: every `tracing` span that the
//! filter lets through is exported over OTLP/HTTP (protobuf) by a batch
//! exporter on its own thread, and W3C trace context is read from and
//! written to HTTP headers (`ragd_server::trace_context`).
//!
//! [`init_with_traces`] installs both once per process; the [`TelemetryGuard`] it
//! returns flushes the spans still buffered when it is dropped.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// How log lines are written: text for people, JSON lines for collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `ragd serve`'s trace export flags.
#[derive(Debug, Clone, Args)]
pub struct OtlpFlags {
    /// Export traces over OTLP/HTTP (protobuf) to this collector, such as
    /// `http://localhost:4318` (spans are posted to `/v1/traces` under it,
    /// unless the URL already ends so). Unset: the standard
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// is used when set; otherwise nothing is exported.
    #[arg(long, env = "RAGD_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans. Default: the standard
    /// `OTEL_SERVICE_NAME`, else `ragd`.
    #[arg(long, env = "RAGD_OTLP_SERVICE_NAME")]
    pub otlp_service_name: Option<String>,
}

impl OtlpFlags {
    /// Where spans go, or `None` when nothing is exported.
    pub fn config(&self) -> Option<OtlpConfig> {
        let set = |var: &str| std::env::var(var).is_ok_and(|v| !v.trim().is_empty());
        let endpoint = match &self.otlp_endpoint {
            Some(url) if !url.trim().is_empty() => Some(traces_url(url)),
            // The exporter reads the standard variables itself.
            _ if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT") => None,
            _ => return None,
        };
        let service_name = (self.otlp_service_name.clone())
            .or_else(|| {
                std::env::var("OTEL_SERVICE_NAME")
                    .ok()
                    .filter(|v| !v.trim().is_empty())
            })
            .unwrap_or_else(|| "ragd".into());
        Some(OtlpConfig {
            endpoint,
            service_name,
        })
    }
}

/// Trace export settings.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The full URL spans are posted to (`.../v1/traces`); `None`: from the
    /// standard `OTEL_EXPORTER_OTLP_*` variables.
    pub endpoint: Option<String>,
    pub service_name: String,
}

/// `base` with OTLP/HTTP's trace path, as `OTEL_EXPORTER_OTLP_ENDPOINT` is
/// read: `http://host:4318` -> `http://host:4318/v1/traces`.
pub fn traces_url(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// Keeps trace export alive; dropping it flushes and stops the exporter.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports the spans ended so far (waits for the collector's answer).
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            if let Err(e) = p.force_flush() {
                tracing::warn!(error = %e, "cannot export traces");
            }
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("warning: cannot export the last traces: {e}");
            }
        }
    }
}

/// Logs only: [`init_with_traces`] without an OTLP endpoint.
pub fn init(format: LogFormat) {
    // Cannot fail: only building a trace exporter can.
    let _ = init_with_traces(format, None);
}

/// Installs the global `tracing` subscriber: logs on stderr in `format`,
/// filtered by `RUST_LOG` (default `info`), and with `otlp` the spans that
/// pass the same filter exported as OpenTelemetry traces. A second call in
/// one process installs nothing (the first subscriber stays) and returns an
/// inert guard.
pub fn init_with_traces(format: LogFormat, otlp: Option<OtlpConfig>) -> anyhow::Result<TelemetryGuard> {
    // hnsw_rs logs every insert at info level.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,hnsw_rs=warn"));
    let provider = otlp.map(|c| tracer_provider(&c)).transpose()?;
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("ragd"))
            .with_threads(false)
    });
    let text =
        (format == LogFormat::Text).then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(otel)
        .with(text)
        .with(json)
        .try_init()
        .is_ok();
    if !installed {
        return Ok(TelemetryGuard { provider: None });
    }
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
    Ok(TelemetryGuard { provider })
}

fn tracer_provider(config: &OtlpConfig) -> anyhow::Result<SdkTracerProvider> {
    let mut exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(BlockingHttp::default());
    if let Some(url) = &config.endpoint {
        exporter = exporter.with_endpoint(url.clone());
    }
    let exporter = exporter
        .build()
        .context("cannot set up the OTLP trace exporter")?;
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The exporter's HTTP client: blocking reqwest (plain HTTP; the
/// workspace's reqwest has no TLS), made on the batch exporter's own thread
/// at its first export, as a blocking client must not be made or dropped
/// on an async runtime's thread.
#[derive(Debug, Default)]
struct BlockingHttp {
    client: OnceLock<reqwest::blocking::Client>,
}

#[async_trait::async_trait]
impl HttpClient for BlockingHttp {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = match self.client.get() {
            Some(c) => c,
            None => {
                let c = reqwest::blocking::Client::builder()
                    .timeout(EXPORT_TIMEOUT)
                    .build()?;
                self.client.get_or_init(|| c)
            }
        };
        let res = client.execute(request.try_into()?)?;
        let mut out = Response::builder().status(res.status());
        if let Some(headers) = out.headers_mut() {
            headers.extend(res.headers().clone());
        }
        Ok(out.body(res.bytes()?)?)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn the_endpoint_is_a_collector_base_as_otel_reads_it() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url(" http://c:4318/ "), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c/otlp"), "http://c/otlp/v1/traces");
    }

    #[test]
    fn serve_takes_the_endpoint_and_service_name() {
        let cli = Cli::try_parse_from([
            "ragd",
            "serve",
            "--otlp-endpoint",
            "http://127.0.0.1:4318",
            "--otlp-service-name",
            "rag-eu",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        let config = args.otlp.config().expect("exporting");
        assert_eq!(
            config.endpoint.as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        assert_eq!(config.service_name, "rag-eu");
    }
}
