//! Key management, behind the admin key: `POST /admin/keys`,
//! `GET /admin/keys`, `DELETE /admin/keys/{id}`; tenants' guard policies:
//! `GET`, `PUT` and `DELETE /admin/tenants/{tenant}/guard-policy`.

use std::sync::Arc;

use crate::path::Path;
use axum::extract::State;
use axum::Json as AxumJson;
use serde::{Deserialize, Serialize};

use ragd_service::guard_policy::GuardPolicy;

use crate::auth::keys::{check_tenant, KeyRecord, KeyRing};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::json::Json;
use crate::routes::collections::{Deleted, List};
use crate::state::AppState;

/// Longest key name, in bytes.
const MAX_KEY_NAME_BYTES: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub tenant: String,
    pub name: Option<String>,
}

/// A key as listed: never the key itself.
#[derive(Debug, Serialize)]
pub struct KeyObject {
    pub object: &'static str,
    pub id: String,
    pub tenant: String,
    pub name: Option<String>,
    /// The key's first characters.
    pub prefix: String,
    pub created: u64,
}

impl From<KeyRecord> for KeyObject {
    fn from(r: KeyRecord) -> Self {
        Self {
            object: "api_key",
            id: r.id,
            tenant: r.tenant,
            name: r.name,
            prefix: r.prefix,
            created: r.created,
        }
    }
}

/// The answer to a create: the key, shown this once.
#[derive(Debug, Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub info: KeyObject,
    pub key: String,
}

fn key_ring(state: &AppState) -> Result<Arc<KeyRing>, ApiError> {
    match &state.auth.auth {
        Auth::Keys { keys, .. } => Ok(keys.clone()),
        // `require_admin` lets no request through in this mode.
        Auth::Disabled => Err(ApiError::NotFound("key management is off".into())),
    }
}

/// Runs a change of the keys file on the blocking pool.
async fn change<T: Send + 'static>(
    keys: Arc<KeyRing>,
    f: impl FnOnce(&KeyRing) -> std::io::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let path = keys.describe();
    tokio::task::spawn_blocking(move || f(&keys))
        .await
        .map_err(|e| ApiError::Internal(format!("key task failed: {e}")))?
        .map_err(|e| {
            tracing::error!(error = %e, keys = path, "cannot save the keys");
            ApiError::Internal("cannot save the keys; see the server log".into())
        })
}

/// `POST /admin/keys`.
pub async fn create(
    State(state): State<AppState>,
    Json(req): Json<CreateKey>,
) -> Result<AxumJson<CreatedKey>, ApiError> {
    check_tenant(&req.tenant).map_err(|reason| {
        ApiError::invalid(format!("invalid tenant `{}`: {reason}", req.tenant), "tenant")
    })?;
    if req.name.as_ref().is_some_and(|n| n.len() > MAX_KEY_NAME_BYTES) {
        return Err(ApiError::invalid(
            format!("`name` must be at most {MAX_KEY_NAME_BYTES} bytes"),
            "name",
        ));
    }
    let (record, key) = change(key_ring(&state)?, move |k| k.create(&req.tenant, req.name)).await?;
    tracing::info!(key_id = %record.id, tenant = %record.tenant, "API key created");
    Ok(AxumJson(CreatedKey {
        info: record.into(),
        key,
    }))
}

/// `GET /admin/keys`.
pub async fn list(State(state): State<AppState>) -> Result<AxumJson<List<KeyObject>>, ApiError> {
    let data = key_ring(&state)?
        .list()
        .into_iter()
        .map(KeyObject::from)
        .collect();
    Ok(AxumJson(List { object: "list", data }))
}

/// `DELETE /admin/keys/{id}`: the key stops working at once.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<AxumJson<Deleted>, ApiError> {
    let target = id.clone();
    if !change(key_ring(&state)?, move |k| k.delete(&target)).await? {
        return Err(ApiError::NotFound(format!("no API key with id `{id}`")));
    }
    tracing::info!(key_id = %id, "API key revoked");
    Ok(AxumJson(Deleted {
        id,
        object: "api_key.deleted",
        deleted: true,
    }))
}

/// A tenant's guard policy as shown: its own, or the server's default.
#[derive(Debug, Serialize)]
pub struct PolicyObject {
    pub object: &'static str,
    pub tenant: String,
    /// `tenant` when the tenant has its own policy, `server` for the default.
    pub source: &'static str,
    #[serde(flatten)]
    pub policy: GuardPolicy,
}

fn tenant_param(tenant: &str) -> Result<(), ApiError> {
    check_tenant(tenant)
        .map_err(|reason| ApiError::invalid(format!("invalid tenant `{tenant}`: {reason}"), "tenant"))
}

fn policy_object(state: &AppState, keys: &KeyRing, tenant: String) -> PolicyObject {
    let own = keys.guard_policy(&tenant);
    PolicyObject {
        object: "guard_policy",
        source: if own.is_some() { "tenant" } else { "server" },
        policy: own.unwrap_or_else(|| GuardPolicy::from_config(&state.guard)),
        tenant,
    }
}

/// `GET /admin/tenants/{tenant}/guard-policy`: the policy in force.
pub async fn get_policy(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<AxumJson<PolicyObject>, ApiError> {
    tenant_param(&tenant)?;
    let keys = key_ring(&state)?;
    Ok(AxumJson(policy_object(&state, &keys, tenant)))
}

/// `PUT /admin/tenants/{tenant}/guard-policy`: the tenant's own policy,
/// in force for its next request.
pub async fn put_policy(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Json(policy): Json<GuardPolicy>,
) -> Result<AxumJson<PolicyObject>, ApiError> {
    tenant_param(&tenant)?;
    policy
        .validate()
        .map_err(|reason| ApiError::invalid(reason, "guard_policy"))?;
    let keys = key_ring(&state)?;
    let who = tenant.clone();
    change(keys.clone(), move |k| k.set_guard_policy(&who, Some(policy))).await?;
    tracing::info!(%tenant, "guard policy set");
    Ok(AxumJson(policy_object(&state, &keys, tenant)))
}

/// `DELETE /admin/tenants/{tenant}/guard-policy`: back to the server's.
pub async fn delete_policy(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<AxumJson<PolicyObject>, ApiError> {
    tenant_param(&tenant)?;
    let keys = key_ring(&state)?;
    let who = tenant.clone();
    change(keys.clone(), move |k| k.set_guard_policy(&who, None)).await?;
    tracing::info!(%tenant, "guard policy removed");
    Ok(AxumJson(policy_object(&state, &keys, tenant)))
}
