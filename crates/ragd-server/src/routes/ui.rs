//! The web playground: a single page at `/` and `/playground`, its
//! scripts and styles under `/ui/`, all compiled into the binary from
//! `crates/ragd-server/ui/` (no build step, no CDN: it works air-gapped).
//! `--no-ui` leaves these routes out.
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles
//! and requests from this origin only, no inline script or style, and
//! Trusted Types required, so the page cannot turn text into HTML (model
//! answers and documents are always shown as text). The page needs no key
//! to load; its API calls carry the key the user types, or none in
//! single-user mode, where the key field is hidden.

use axum::extract::State;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::error::ApiError;
use crate::path::Path;

/// The policy of every playground answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'; \
    require-trusted-types-for 'script'; trusted-types 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../../ui/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// The files under `/ui/` (the page itself is `index.html`).
const ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("js/main.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/chat.js", JS),
    asset!("js/chat_view.js", JS),
    asset!("js/sse.js", JS),
    asset!("js/kb.js", JS),
    asset!("js/guard.js", JS),
    asset!("js/status.js", JS),
    asset!("js/prometheus.js", JS),
];

const PAGE: &str = include_str!("../../ui/index.html");
/// The page's `data-auth` attribute, set to `none` in single-user mode.
const AUTH_MARK: &str = "data-auth=\"keys\"";

/// A body with its validator.
struct Served {
    content_type: &'static str,
    body: Vec<u8>,
    etag: HeaderValue,
}

impl Served {
    fn new(content_type: &'static str, body: Vec<u8>) -> Self {
        let digest = Sha256::digest(&body);
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        let etag = HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header");
        Self {
            content_type,
            body,
            etag,
        }
    }

    /// 200 with the body, or 304 when the client holds this version.
    fn answer(&self, headers: &HeaderMap) -> Response {
        let fresh = (headers.get(IF_NONE_MATCH))
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == self.etag));
        let status = if fresh {
            StatusCode::NOT_MODIFIED
        } else {
            StatusCode::OK
        };
        let mut response = if fresh {
            status.into_response()
        } else {
            (status, self.body.clone()).into_response()
        };
        let h = response.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        h.insert(ETAG, self.etag.clone());
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        response
    }
}

struct Files {
    page: Served,
    assets: Vec<(&'static str, Served)>,
}

/// The playground's routes. `single_user`: the server runs without API
/// keys (`--no-auth`), so the page hides its key field.
pub fn router<S: Clone + Send + Sync + 'static>(single_user: bool) -> Router<S> {
    let page = match single_user {
        true => PAGE.replacen(AUTH_MARK, "data-auth=\"none\"", 1),
        false => PAGE.to_string(),
    };
    let files = Arc::new(Files {
        page: Served::new("text/html; charset=utf-8", page.into_bytes()),
        assets: (ASSETS.iter())
            .map(|a| (a.name, Served::new(a.content_type, a.body.to_vec())))
            .collect(),
    });
    Router::new()
        .route("/", get(page_handler))
        .route("/playground", get(page_handler))
        .route("/ui/{*file}", get(asset_handler))
        .with_state(files)
}

async fn page_handler(State(files): State<Arc<Files>>, headers: HeaderMap) -> Response {
    files.page.answer(&headers)
}

async fn asset_handler(
    State(files): State<Arc<Files>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, served) = (files.assets.iter())
        .find(|(name, _)| *name == file)
        .ok_or_else(|| ApiError::NotFound(format!("no playground file `{file}`")))?;
    Ok(served.answer(&headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module a script imports is served (a missing one would only
    /// show in a browser).
    #[test]
    fn every_imported_module_is_embedded() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).expect("UTF-8 script");
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let target = line
                    .rsplit_once("from \"./")
                    .map(|(_, t)| t.trim_end_matches("\";"));
                let target = target.unwrap_or_else(|| panic!("{}: unexpected import {line:?}", asset.name));
                let path = format!("js/{target}");
                assert!(
                    ASSETS.iter().any(|a| a.name == path),
                    "{} imports {path}, which is not embedded",
                    asset.name
                );
            }
        }
        assert!(PAGE.contains(AUTH_MARK), "the page marks its auth mode");
        for a in ASSETS
            .iter()
            .filter(|a| a.name != "js/main.js" && a.name.ends_with(".js"))
        {
            assert!(
                ASSETS
                    .iter()
                    .any(|b| std::str::from_utf8(b.body).unwrap().contains(&a.name[3..])),
                "{} is embedded but nothing imports it",
                a.name
            );
        }
    }
}
