//! What the server under test runs, from `GET /v1/models`: ragd lists each
//! model with its `kind` and `max_input_tokens`; other servers list only
//! their generators, without either.

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::http::Endpoint;

/// A model the server lists.
#[derive(Debug, Clone, Serialize)]
pub struct ServedModel {
    pub id: String,
    /// Longest input of one forward pass, in tokens (ragd only).
    pub max_input_tokens: Option<usize>,
}

/// The server's generator, embedder and guard (`None`: not listed).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerModels {
    pub generator: Option<ServedModel>,
    pub embedder: Option<ServedModel>,
    pub guard: Option<ServedModel>,
}

impl ServerModels {
    pub async fn fetch(endpoint: &Endpoint) -> anyhow::Result<Self> {
        let what = format!("GET {}/v1/models", endpoint.url);
        let resp = endpoint.get("/v1/models").send().await.context(what.clone())?;
        let status = resp.status();
        let v: Value = resp.json().await.with_context(|| format!("{what}: not JSON"))?;
        anyhow::ensure!(status.is_success(), "{what}: HTTP {status}: {v}");
        Ok(Self::from_list(&v))
    }

    fn from_list(v: &Value) -> Self {
        let models = v["data"].as_array().cloned().unwrap_or_default();
        let of_kind = |kind: &str| {
            models.iter().find(|m| m["kind"] == kind).map(|m| ServedModel {
                id: m["id"].as_str().unwrap_or_default().to_string(),
                max_input_tokens: m["max_input_tokens"].as_u64().map(|n| n as usize),
            })
        };
        let first = models
            .first()
            .filter(|m| m.get("kind").is_none())
            .map(|m| ServedModel {
                id: m["id"].as_str().unwrap_or_default().to_string(),
                max_input_tokens: None,
            });
        Self {
            generator: of_kind("generator").or(first),
            embedder: of_kind("embedder"),
            guard: of_kind("guard"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_each_kind_or_a_plain_servers_first_model() {
        let ragd = ServerModels::from_list(&json!({"data": [
            {"id": "minilm", "kind": "embedder", "max_input_tokens": 256},
            {"id": "nanoguard", "kind": "guard", "max_input_tokens": 512},
            {"id": "smollm2", "kind": "generator", "max_input_tokens": 4096},
        ]}));
        assert_eq!(ragd.generator.unwrap().id, "smollm2");
        assert_eq!(ragd.embedder.unwrap().max_input_tokens, Some(256));
        assert_eq!(ragd.guard.unwrap().id, "nanoguard");
        let llama = ServerModels::from_list(&json!({"data": [{"id": "model.gguf"}]}));
        assert_eq!(llama.generator.unwrap().id, "model.gguf");
        assert!(llama.embedder.is_none() && llama.guard.is_none());
    }
}
