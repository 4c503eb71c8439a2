//! `ragd serve`'s fallback flags: upstream servers, routes, retries,
//! deadlines and circuit breakers.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ragd_server::config::{Secret, UpstreamSpec, UpstreamsConfig};
use ragd_service::resilience::{BreakerConfig, RetryPolicy};

#[derive(Debug, Clone, Args)]
pub struct UpstreamFlags {
    /// An OpenAI-compatible server to fall back to, as NAME=URL (another
    /// ragd, vLLM, llama-server, a hosted API); repeatable. Its key comes
    /// from --upstream-key-file or `RAGD_UPSTREAM_KEY_<NAME>`.
    #[arg(long = "upstream", value_parser = pair)]
    pub upstreams: Vec<(String, String)>,
    /// NAME=FILE: the API key ragd sends upstream NAME (never the caller's).
    #[arg(long = "upstream-key-file", value_parser = pair)]
    pub key_files: Vec<(String, String)>,
    /// NAME=MODEL,MODEL: the models upstream NAME serves (default: asked
    /// from its /v1/models every 30 s).
    #[arg(long = "upstream-models", value_parser = pair)]
    pub models: Vec<(String, String)>,
    /// MODEL=TARGET,TARGET: where requests for MODEL go, in order
    /// (`local` first if at all, then upstream names). Default: local when
    /// ragd runs the model, then each upstream serving it.
    #[arg(long = "route", value_parser = pair)]
    pub routes: Vec<(String, String)>,
    /// Deadline of one upstream attempt (for a stream: its start, then each chunk).
    #[arg(long, env = "RAGD_UPSTREAM_TIMEOUT_SECONDS", default_value_t = 60.0)]
    pub upstream_timeout_seconds: f64,
    /// Deadline of a local (not streamed) generation that has an upstream
    /// to fall back to; 0: none.
    #[arg(long, env = "RAGD_LOCAL_TIMEOUT_SECONDS", default_value_t = 0.0)]
    pub local_timeout_seconds: f64,
    /// Attempts per upstream, the first included.
    #[arg(long, env = "RAGD_UPSTREAM_ATTEMPTS", default_value_t = 2)]
    pub upstream_attempts: u32,
    /// Failures within --breaker-window-seconds that open an upstream's breaker.
    #[arg(long, env = "RAGD_BREAKER_FAILURES", default_value_t = 5)]
    pub breaker_failures: u32,
    #[arg(long, env = "RAGD_BREAKER_WINDOW_SECONDS", default_value_t = 30.0)]
    pub breaker_window_seconds: f64,
    /// How long an open breaker skips its upstream before one probe.
    #[arg(long, env = "RAGD_BREAKER_COOLDOWN_SECONDS", default_value_t = 15.0)]
    pub breaker_cooldown_seconds: f64,
}

/// `A=B` as a pair.
fn pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
            Ok((a.trim().to_string(), b.trim().to_string()))
        }
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

fn list(s: &str) -> Vec<String> {
    (s.split(',').map(str::trim))
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

impl UpstreamFlags {
    pub fn config(&self) -> UpstreamsConfig {
        let find = |pairs: &[(String, String)], name: &str| {
            pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
        };
        let defaults = UpstreamsConfig::default();
        UpstreamsConfig {
            upstreams: (self.upstreams.iter())
                .map(|(name, url)| UpstreamSpec {
                    name: name.clone(),
                    url: url.clone(),
                    key: std::env::var(key_env(name)).ok().map(Secret),
                    key_file: find(&self.key_files, name).map(PathBuf::from),
                    models: find(&self.models, name).map(|m| list(&m)),
                })
                .collect(),
            routes: (self.routes.iter())
                .map(|(model, targets)| (model.clone(), list(targets)))
                .collect(),
            timeout: Duration::from_secs_f64(self.upstream_timeout_seconds),
            local_timeout: (self.local_timeout_seconds > 0.0)
                .then(|| Duration::from_secs_f64(self.local_timeout_seconds)),
            retry: RetryPolicy {
                attempts: self.upstream_attempts.max(1),
                ..defaults.retry
            },
            breaker: BreakerConfig {
                failures: self.breaker_failures.max(1),
                window: Duration::from_secs_f64(self.breaker_window_seconds),
                cooldown: Duration::from_secs_f64(self.breaker_cooldown_seconds),
            },
        }
    }
}

/// `RAGD_UPSTREAM_KEY_<NAME>`, the name upper-cased with `-` as `_`.
fn key_env(name: &str) -> String {
    format!(
        "RAGD_UPSTREAM_KEY_{}",
        name.to_ascii_uppercase().replace('-', "_")
    )
}
