//! A small client of ragd's HTTP API for the command-line tools (`ragd
//! ingest`, `ragd query`, `ragd eval rag`): base URL, optional API key, JSON
//! in and out, errors with the server's message.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use reqwest::Method;
use serde_json::Value;

/// Which server a command-line tool talks to.
#[derive(Debug, Clone, Args)]
pub struct ServerFlags {
    /// Base URL of the server (with or without `/v1`).
    #[arg(long, env = "RAGD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Bearer token sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "RAGD_API_KEY")]
    pub api_key: Option<String>,
}

pub struct ApiClient {
    pub http: reqwest::Client,
    pub url: String,
    pub api_key: Option<String>,
}

impl ApiClient {
    pub fn from_flags(flags: &ServerFlags) -> anyhow::Result<Self> {
        Self::new(&flags.url, flags.api_key.clone())
    }

    /// `url` with or without a trailing `/v1`.
    pub fn new(url: &str, api_key: Option<String>) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()?,
            url: url.trim_end_matches('/').trim_end_matches("/v1").to_string(),
            api_key,
        })
    }

    /// The status and the JSON body (`null` when the body is not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.url));
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {}{path}", self.url))?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// The JSON body of a 2xx answer; anything else is an error carrying
    /// the server's message.
    pub async fn ok(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (status, v) = self.call(method.clone(), path, body).await?;
        if !(200..300).contains(&status) {
            let msg = v["error"]["message"]
                .as_str()
                .map_or_else(|| v.to_string(), str::to_string);
            anyhow::bail!("{method} {path}: HTTP {status}: {msg}");
        }
        Ok(v)
    }
}

/// A two-thread runtime for a command-line tool.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// A progress bar with counts and time left.
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len).with_message(what.to_string());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bar:40} {pos}/{len} [{elapsed_precise}<{eta_precise}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
