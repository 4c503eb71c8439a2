//! From parsed flags to the plain configs the server and the service layer
//! take: the one place that knows both.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use ragd_models::guard::GuardThreshold;
use ragd_server::config::{AuthConfig, CacheSettings, ConnectionConfig, RedisConfig, ServeConfig};
use ragd_service::{CollectionLimits, GuardConfig, ModelsConfig, RequestLimits};

use crate::cli::ServeArgs;
use crate::flags::EmbedderFlags;

impl EmbedderFlags {
    /// The models config of these flags: the embedder, the folder, device
    /// and budgets; the other models as `ragd serve`'s defaults.
    pub fn models_config(&self) -> ModelsConfig {
        ModelsConfig {
            models_dir: self.dir.models_dir.clone(),
            embedder: self.embedder.clone(),
            device: self.device.clone(),
            queue_capacity: self.queue_capacity,
            per_tenant_queue_capacity: self.per_tenant_queue_capacity,
            max_batch_tokens: self.max_batch_tokens,
            max_batch_seqs: self.max_batch_seqs,
            ..ModelsConfig::default()
        }
    }
}

impl ServeArgs {
    /// The server's config. Fails only when `--guard-threshold fpr:RATE`
    /// cannot be resolved (no guard, or one without a calibration).
    pub fn into_config(self) -> anyhow::Result<ServeConfig> {
        let (threshold, thresholds) = self.guard_thresholds()?;
        let models = ModelsConfig {
            guards: self.guards(),
            generator: self.generator,
            reranker: self.reranker,
            exact_weights: self.exact_weights,
            kv_cache_mb: self.kv_cache_mb,
            kv_cache_dtype: self.kv_cache_dtype,
            generator_backend: self.generator_backend,
            kv_block_size: self.kv_block_size,
            max_context: self.max_context,
            max_step_tokens: self.max_step_tokens,
            max_running: self.max_running,
            prefix_cache: self.prefix_cache && !self.no_prefix_cache,
            tool_call_format: self.tool_call_format,
            ..self.models.models_config()
        };
        Ok(ServeConfig {
            host: self.host,
            port: self.port,
            models,
            request_limits: RequestLimits {
                max_inputs: self.max_inputs,
                max_input_bytes: self.max_input_bytes,
                max_chat_bytes: self.max_chat_bytes,
            },
            guard: GuardConfig {
                threshold,
                thresholds,
                combine: self.guard_combine,
                max_windows: self.max_guard_windows,
                screen_chat: self.guard_chat,
                screen_output: self.guard_output,
                canary: self.guard_canary,
            },
            collection_limits: CollectionLimits {
                max_documents: self.max_documents,
                max_document_bytes: self.max_document_bytes,
                max_top_k: self.max_top_k,
            },
            max_body_bytes: self.max_body_bytes,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            request_timeout: (self.request_timeout_seconds > 0.0)
                .then(|| Duration::from_secs_f64(self.request_timeout_seconds)),
            data_dir: self.data_dir,
            store: self.store,
            max_collections_per_tenant: self.max_collections_per_tenant,
            max_documents_per_collection: self.max_documents_per_collection,
            rag_template: self.rag_template,
            auth: AuthConfig {
                no_auth: self.no_auth,
                keys_file: self.keys_file,
                keys_in_postgres: self.keys == "postgres",
                admin_key_file: self.admin_key_file,
                admin_key: self.admin_key,
                rate_limit_rpm: self.rate_limit_rpm,
                rate_limit_burst: self.rate_limit_burst,
                auth_failures_per_minute: self.auth_failures_per_minute,
            },
            connections: ConnectionConfig {
                max_connections: self.max_connections,
                header_timeout: Duration::from_secs(self.header_timeout_seconds),
                body_timeout: Duration::from_secs(self.body_timeout_seconds),
            },
            caches: CacheSettings {
                response_cache_mb: self.response_cache_mb,
                semantic_threshold: self.semantic_cache_threshold,
                semantic_entries: self.semantic_cache_entries,
                semantic_mb: self.semantic_cache_mb,
                ttl: Duration::from_secs(self.response_cache_ttl_seconds),
            },
            upstreams: self.upstreams.config(),
            redis: self.redis_url.map(|url| RedisConfig {
                url,
                timeout: Duration::from_millis(self.redis_timeout_ms),
            }),
            ui: !self.no_ui,
        })
    }

    /// The `--guard` names, `none` left out.
    fn guards(&self) -> Vec<String> {
        (self.guard.iter())
            .filter(|g| g.as_str() != "none")
            .cloned()
            .collect()
    }

    /// `--guard-threshold` as scores: the default (the first guard's) and
    /// each guard's own by model id where they differ: a score as given,
    /// a false-positive rate from each guard's calibration.
    fn guard_thresholds(&self) -> anyhow::Result<(f32, BTreeMap<String, f32>)> {
        let (guards, given) = (self.guards(), &self.guard_threshold);
        if let [GuardThreshold::Score(v)] = given[..] {
            return Ok((v, BTreeMap::new()));
        }
        if given.len() != 1 && given.len() != guards.len() {
            bail!(
                "--guard-threshold is given {} times for {} guards: give it once, or once per --guard",
                given.len(),
                guards.len()
            );
        }
        if guards.is_empty() {
            bail!(
                "--guard-threshold {}: there is no guard to calibrate it",
                given[0]
            );
        }
        let (mut own, mut first) = (BTreeMap::new(), None);
        for (i, guard) in guards.iter().enumerate() {
            let wanted = &given[i.min(given.len() - 1)];
            let dir = ragd_models::resolve_model_dir(guard, &self.models.dir.models_dir)?;
            let score = wanted.resolve(dir.as_deref())?;
            let id = dir.as_deref().map(ragd_models::model_id).transpose()?;
            tracing::info!(guard, threshold = %wanted, score, "guard threshold");
            own.insert(id.unwrap_or_else(|| guard.clone()), score);
            first.get_or_insert(score);
        }
        Ok((first.unwrap_or(0.5), own))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    use super::*;

    fn parse(argv: &[&str]) -> ServeConfig {
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => args.into_config().unwrap(),
            _ => unreachable!("a serve command"),
        }
    }

    /// The flags' defaults and the configs' `Default` are written twice
    /// (clap shows its own in `--help`); they must agree.
    #[test]
    fn no_flags_give_the_default_config() {
        let mut parsed = parse(&["ragd", "serve"]);
        // The tests' environment names the models folder.
        parsed.models.models_dir = ModelsConfig::default().models_dir;
        assert_eq!(format!("{parsed:?}"), format!("{:?}", ServeConfig::default()));
    }

    #[test]
    fn flags_land_in_their_config_fields() {
        let c = parse(&[
            "ragd",
            "serve",
            "--port",
            "0",
            "--guard",
            "none",
            "--guard-chat",
            "--max-chat-bytes",
            "7",
            "--semantic-cache-threshold",
            "0.9",
            "--body-timeout-seconds",
            "3",
            "--max-top-k",
            "5",
            "--reranker",
            "my-reranker",
        ]);
        assert_eq!(c.models.reranker, "my-reranker");
        assert_eq!(c.port, 0);
        assert!(c.models.guards.is_empty());
        assert!(c.guard.screen_chat);
        assert_eq!(c.request_limits.max_chat_bytes, 7);
        assert_eq!(c.caches.semantic_threshold, Some(0.9));
        assert_eq!(c.connections.body_timeout, Duration::from_secs(3));
        assert_eq!(c.collection_limits.max_top_k, 5);
        assert!(c.models.prefix_cache, "on by default");
        assert!(c.ui, "the playground is on by default");
        assert!(!parse(&["ragd", "serve", "--no-ui"]).ui);
    }

    #[test]
    fn redis_flags_land_in_their_config_and_the_url_stays_out_of_logs() {
        assert!(parse(&["ragd", "serve"]).redis.is_none());
        let c = parse(&[
            "ragd",
            "serve",
            "--redis-url",
            "redis://:hunter2@127.0.0.1:6390/2",
            "--redis-timeout-ms",
            "40",
        ]);
        let redis = c.redis.as_ref().expect("a Redis config");
        assert_eq!(redis.url.0, "redis://:hunter2@127.0.0.1:6390/2");
        assert_eq!(redis.timeout, Duration::from_millis(40));
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "the password is not in the config's Debug form"
        );
        assert_eq!(
            parse(&["ragd", "serve", "--redis-url", "redis://h"])
                .redis
                .unwrap()
                .timeout,
            Duration::from_millis(100)
        );
        for bad in [
            &[
                "ragd",
                "serve",
                "--redis-url",
                "redis://h",
                "--redis-timeout-ms",
                "0",
            ][..],
            &["ragd", "serve", "--redis-timeout-ms", "50"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_prefix_cache_turns_off_either_way() {
        for argv in [
            &["ragd", "serve", "--no-prefix-cache"][..],
            &["ragd", "serve", "--prefix-cache", "false"],
            &["ragd", "serve", "--prefix-cache=false"],
        ] {
            assert!(!parse(argv).models.prefix_cache, "{argv:?}");
        }
        for argv in [
            &["ragd", "serve", "--prefix-cache"][..],
            &["ragd", "serve", "--prefix-cache", "true"],
        ] {
            assert!(parse(argv).models.prefix_cache, "{argv:?}");
        }
    }

    #[test]
    fn store_flags_land_in_their_config_and_the_url_stays_out_of_logs() {
        let c = parse(&["ragd", "serve"]);
        assert!(
            c.store.is_none() && !c.auth.keys_in_postgres,
            "the data folder and the keys file by default"
        );
        let url = "postgres://ragd:hunter2@db:5432/ragd";
        let c = parse(&["ragd", "serve", "--store", url, "--keys", "postgres"]);
        assert_eq!(c.store.as_ref().map(|s| s.0.as_str()), Some(url));
        assert!(c.auth.keys_in_postgres);
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "no password in the config's Debug form"
        );
        for bad in [
            &["ragd", "serve", "--keys", "postgres"][..],
            &["ragd", "serve", "--store", url, "--keys", "redis"][..],
            &[
                "ragd",
                "serve",
                "--store",
                url,
                "--keys",
                "postgres",
                "--keys-file",
                "k.toml",
            ][..],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
