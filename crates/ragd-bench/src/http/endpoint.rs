//! The server under test: its base URL, API key and an HTTP client that
//! opens one connection per request.

use std::time::Duration;

/// A server's base URL (without `/v1`), its API key, and the client.
#[derive(Clone)]
pub struct Endpoint {
    pub client: reqwest::Client,
    pub url: String,
    pub api_key: Option<String>,
}

impl Endpoint {
    /// `url` with or without a trailing `/` or `/v1`; requests give up
    /// after `timeout`.
    pub fn new(url: &str, api_key: Option<String>, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            client: fresh_connections(timeout)?,
            url: url.trim_end_matches('/').trim_end_matches("/v1").to_string(),
            api_key,
        })
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.authorized(self.client.post(format!("{}{path}", self.url)))
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.authorized(self.client.get(format!("{}{path}", self.url)))
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }
}

/// A client that keeps no idle connection: every request opens its own,
/// so none is ever sent on a connection the server has closed meanwhile.
fn fresh_connections(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .tcp_nodelay(true)
        .timeout(timeout)
        .build()
}
