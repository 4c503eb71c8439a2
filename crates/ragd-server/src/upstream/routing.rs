//! The upstreams, their breakers, and which targets a model's requests go to.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use ragd_service::resilience::Breaker;

use super::metrics::UpstreamMetrics;

use crate::config::UpstreamsConfig;

/// The response header naming who answered: `local` or an upstream's name.
pub const SERVED_BY: HeaderName = HeaderName::from_static("x-ragd-served-by");

/// One upstream server.
pub struct Upstream {
    pub name: String,
    /// Its API root, ending in `/v1`.
    pub(super) base: String,
    pub(super) key: Option<String>,
    /// Models it serves: listed in the configuration, else discovered
    /// from its `/v1/models`.
    pub(super) models: RwLock<Vec<String>>,
    pub(super) listed: bool,
    pub(super) breaker: Breaker,
}

impl Upstream {
    pub fn serves(&self, model: &str) -> bool {
        self.models
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|m| m == model)
    }
}

/// Where a request for a model may go, in order.
#[derive(Clone)]
pub enum Target {
    Local,
    Upstream(Arc<Upstream>),
}

/// The upstreams, the routes and the retry and deadline settings.
pub struct Upstreams {
    pub(super) list: Vec<Arc<Upstream>>,
    pub(super) routes: HashMap<String, Vec<String>>,
    pub(super) client: reqwest::Client,
    pub(super) config: UpstreamsConfig,
    pub(super) metrics: UpstreamMetrics,
}

impl Upstreams {
    /// `None` when no upstream is configured.
    pub fn new(
        config: &UpstreamsConfig,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        if config.upstreams.is_empty() {
            return Ok(None);
        }
        let mut list = Vec::new();
        for spec in &config.upstreams {
            let root = spec.url.trim_end_matches('/');
            let base = if root.ends_with("/v1") {
                root.to_string()
            } else {
                format!("{root}/v1")
            };
            list.push(Arc::new(Upstream {
                name: spec.name.clone(),
                base,
                key: match (&spec.key, &spec.key_file) {
                    (_, Some(file)) => Some(
                        std::fs::read_to_string(file)
                            .map_err(|e| {
                                anyhow::anyhow!("upstream `{}` key file {}: {e}", spec.name, file.display())
                            })?
                            .trim()
                            .to_string(),
                    ),
                    (key, None) => key.as_ref().map(|k| k.0.clone()),
                },
                models: RwLock::new(spec.models.clone().unwrap_or_default()),
                listed: spec.models.is_some(),
                breaker: Breaker::new(config.breaker),
            }));
        }
        for (model, names) in &config.routes {
            if names.iter().skip(1).any(|n| n == "local") {
                anyhow::bail!("--route {model}: `local` can only come first");
            }
            for name in names {
                if name != "local" && !list.iter().any(|u| &u.name == name) {
                    anyhow::bail!("--route {model}: no upstream is named `{name}`");
                }
            }
        }
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()?;
        let metrics = UpstreamMetrics::new(list.iter().map(|u| u.name.as_str()), registry)?;
        Ok(Some(Arc::new(Self {
            routes: config.routes.iter().cloned().collect(),
            list,
            client,
            config: config.clone(),
            metrics,
        })))
    }

    /// The targets for `model`, in order; `local` says whether ragd runs it.
    pub fn targets(&self, model: &str, local: bool) -> Vec<Target> {
        let upstream = |name: &str| self.list.iter().find(|u| u.name == name).cloned();
        match self.routes.get(model) {
            Some(names) => (names.iter())
                .filter_map(|n| match n.as_str() {
                    "local" => local.then_some(Target::Local),
                    name => upstream(name).map(Target::Upstream),
                })
                .collect(),
            None => (local.then_some(Target::Local).into_iter())
                .chain(
                    (self.list.iter())
                        .filter(|u| u.serves(model))
                        .map(|u| Target::Upstream(u.clone())),
                )
                .collect(),
        }
    }

    /// Brings the breaker gauges up to date at a scrape: an open breaker
    /// past its cool-down reads half-open although no request came since.
    pub fn refresh_metrics(&self) {
        let now = Instant::now();
        for up in &self.list {
            (self.metrics.breaker_state)
                .with_label_values(&[&up.name])
                .set(up.breaker.state(now).gauge());
        }
    }

    /// A local attempt failed and `to` takes over.
    pub fn count_fallback(&self, from: &str, to: &str) {
        self.metrics.fallbacks.with_label_values(&[from, to]).inc();
    }

    /// How long a local generation may take before the request falls
    /// back (`None`: no deadline).
    pub fn local_timeout(&self) -> Option<Duration> {
        self.config.local_timeout
    }

    /// Learns the models of upstreams that were not given a list, now and
    /// every `interval`, in the background.
    pub fn spawn_discovery(self: &Arc<Self>, interval: Duration) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                for up in this.list.iter().filter(|u| !u.listed) {
                    match this.discover(up).await {
                        Ok(models) => {
                            *up.models.write().unwrap_or_else(|p| p.into_inner()) = models;
                        }
                        Err(e) => {
                            tracing::warn!(upstream = %up.name, error = %e, "listing the upstream's models failed")
                        }
                    }
                }
                tokio::time::sleep(interval).await;
            }
        });
    }

    async fn discover(&self, up: &Upstream) -> anyhow::Result<Vec<String>> {
        let mut req = self
            .client
            .get(format!("{}/models", up.base))
            .timeout(self.config.timeout);
        if let Some(key) = &up.key {
            req = req.bearer_auth(key);
        }
        let list: serde_json::Value = req.send().await?.error_for_status()?.json().await?;
        Ok((list["data"].as_array().into_iter().flatten())
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect())
    }
}

/// Marks answers ragd generated itself (`x-ragd-served-by: local`) unless
/// a handler named an upstream.
pub async fn mark_served_by(mut response: Response) -> Response {
    if !response.headers().contains_key(SERVED_BY) {
        response
            .headers_mut()
            .insert(SERVED_BY, HeaderValue::from_static("local"));
    }
    response
}
