//! Tenants and API keys.
//!
//! Every `/v1/*` request carries `Authorization: Bearer <key>`; the key
//! names its tenant ([`keys::KeyRing`]). [`require_tenant`] is the one
//! middleware that checks it and hands the handlers a [`Tenant`]. The
//! `/admin/*` routes take the admin key instead ([`require_admin`]).
//! `--no-auth` (single-user mode, loopback addresses only) skips the check
//! and puts every request in the tenant `default`.

pub mod keys;
mod keys_pg;
pub mod throttle;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::IntCounter;
pub use ragd_service::tenant::DEFAULT_TENANT;
use ragd_service::Tenant;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::rate_limit::RateLimits;
use keys::KeyRing;
use throttle::AuthThrottle;
use tracing::Instrument;

/// How requests are authenticated.
pub enum Auth {
    /// `--no-auth`: no keys, every request is [`DEFAULT_TENANT`].
    Disabled,
    /// Keys from the keys file; `admin` guards `/admin/*` (`None`: those
    /// routes refuse everyone).
    Keys {
        keys: Arc<KeyRing>,
        admin: Option<AdminKey>,
    },
}

/// The admin key, kept as its SHA-256 only.
pub struct AdminKey([u8; 32]);

impl AdminKey {
    pub fn new(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Compares in constant time (over the hashes).
    fn matches(&self, key: &str) -> bool {
        let given: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        given.iter().zip(&self.0).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// The tenant of an authenticated request, set by [`require_tenant`].
/// Handlers take it as an extractor: `Authed(tenant): Authed`.
#[derive(Clone, Debug)]
pub struct Authed(pub Tenant);

impl<S: Send + Sync> FromRequestParts<S> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Tenant>()
            .cloned()
            .map(Authed)
            .ok_or_else(|| ApiError::Internal("route has no authentication layer".into()))
    }
}

/// What the authentication middleware needs: how keys are checked, the
/// per-address throttle of failures and the per-key rate limits.
pub struct AuthState {
    pub auth: Auth,
    /// Failed authentications allowed per client address; `None`: unlimited.
    pub throttle: Option<AuthThrottle>,
    /// Per-key request budgets; `None`: unlimited.
    pub rate_limits: Option<RateLimits>,
    /// Counts requests refused by a key's rate limit.
    rate_limited: IntCounter,
}

impl AuthState {
    pub fn new(
        auth: Auth,
        failures_per_minute: Option<NonZeroU32>,
        rate_limits: Option<RateLimits>,
        rate_limited: IntCounter,
    ) -> Self {
        Self {
            auth,
            throttle: failures_per_minute.map(AuthThrottle::new),
            rate_limits,
            rate_limited,
        }
    }
}

/// The key of `Authorization: Bearer <key>`.
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let missing = || {
        ApiError::Unauthorized(
            "You didn't provide an API key. You need to provide your API key in an Authorization \
             header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                .into(),
        )
    };
    let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let (scheme, key) = value.split_once(' ').ok_or_else(missing)?;
    let key = key.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() {
        return Err(missing());
    }
    Ok(key)
}

fn incorrect(key: &str) -> ApiError {
    ApiError::Unauthorized(format!("Incorrect API key provided: {}****.", keys::shown(key)))
}

/// The client's address (unspecified when the router runs without
/// sockets, as in tests).
fn client_addr(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// Checks a request's credentials with `verify`, counting a failure
/// against its client address: an address that fails too often is shut
/// out (429) before any key is compared.
fn authenticate<T>(
    state: &AuthState,
    req: &Request,
    verify: impl FnOnce(&HeaderMap) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let Some(throttle) = &state.throttle else {
        return verify(req.headers());
    };
    let addr = client_addr(req);
    throttle.check(addr).map_err(ApiError::AuthThrottled)?;
    verify(req.headers()).map_err(|e| match throttle.failed(addr) {
        Ok(()) => e,
        Err(shut) => {
            tracing::warn!(client = %addr, "too many failed authentications; address shut out");
            ApiError::AuthThrottled(shut)
        }
    })
}

/// Middleware of the `/v1/*` routes: the request's key must be known and
/// within its rate limit; its tenant goes into the request (and onto its
/// log lines).
pub async fn require_tenant(
    State(state): State<Arc<AuthState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let auth_span = tracing::info_span!("auth");
    let (key_id, tenant) = auth_span.in_scope(|| {
        Ok::<_, ApiError>(match &state.auth {
            Auth::Disabled => (DEFAULT_TENANT.to_string(), Tenant::new(DEFAULT_TENANT)),
            Auth::Keys { keys, .. } => {
                let owner = authenticate(&state, &req, |headers| {
                    let key = bearer(headers)?;
                    keys.owner_of(key).ok_or_else(|| incorrect(key))
                })?;
                (owner.key_id, Tenant::new(&owner.tenant))
            }
        })
    })?;
    tracing::Span::current().record("tenant", tenant.as_str());
    let allowed = match &state.rate_limits {
        Some(limits) => Some(
            (limits.check(&key_id))
                .instrument(tracing::info_span!("rate_limit"))
                .await
                .map_err(|limited| {
                    state.rate_limited.inc();
                    ApiError::RateLimited(limited)
                })?,
        ),
        None => None,
    };
    req.extensions_mut().insert(tenant);
    let mut response = next.run(req).await;
    if let Some(allowed) = allowed {
        crate::rate_limit::add_headers(response.headers_mut(), allowed.limit, allowed.remaining);
    }
    Ok(response)
}

/// Middleware of the `/admin/*` routes: the request must carry the admin key.
pub async fn require_admin(
    State(state): State<Arc<AuthState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match &state.auth {
        Auth::Disabled => Err(ApiError::NotFound(
            "key management is off: this server runs with --no-auth".into(),
        )),
        Auth::Keys { admin: None, .. } => Err(ApiError::Unauthorized(
            "no admin key is configured on this server (--admin-key-file or RAGD_ADMIN_KEY)".into(),
        )),
        Auth::Keys {
            admin: Some(admin), ..
        } => {
            authenticate(&state, &req, |headers| {
                let key = bearer(headers)?;
                if admin.matches(key) {
                    Ok(())
                } else {
                    Err(incorrect(key))
                }
            })?;
            tracing::Span::current().record("tenant", "admin");
            Ok(next.run(req).await)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_header_parsing() {
        let mut h = HeaderMap::new();
        assert!(bearer(&h).is_err());
        for (value, ok) in [
            ("Bearer rk-abc", Some("rk-abc")),
            ("bearer  rk-abc ", Some("rk-abc")),
            ("Basic dXNlcjpwYXNz", None),
            ("Bearer ", None),
            ("rk-abc", None),
        ] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer(&h).ok(), ok, "{value}");
        }
    }

    #[test]
    fn admin_key_matches_only_itself() {
        let admin = AdminKey::new("a-long-admin-key-123");
        assert!(admin.matches("a-long-admin-key-123"));
        assert!(!admin.matches("a-long-admin-key-124"));
        assert!(!admin.matches(""));
    }
}
