//! The server a command-line tool talks to: base URL, optional API key,
//! JSON in and out, errors with the server's message.

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

/// The model to ask: the generator of ragd's `GET /v1/models` (ragd lists
/// every model with its `kind`), else the first model listed (other servers
/// list only generators). `url` without `/v1`.
pub async fn first_model(
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
