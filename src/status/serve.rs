//! `GET /status/{list id}` on the DIDComm listener: the status list
//! credential, a VC-JWT signed by the list's issuer DID. A list whose bits
//! changed is signed again on the next request, but at most once per
//! `status.resign_interval_ms`; meanwhile the signed one is served from
//! memory, so a burst of revocations makes one new list. No token is
//! needed: the list is public by design, and holds nothing but bits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::sync::Mutex;

use crate::Core;
use crate::didcomm::http::problem;
use crate::error::Result;
use crate::store::StatusList;

/// What the listener serves under `/status/`; merged into its router.
pub fn routes(core: Core) -> Router {
    Router::new()
        .route("/status/{list_id}", get(answer))
        .with_state(Arc::new(Publisher {
            core,
            signed: Mutex::new(HashMap::new()),
        }))
}

struct Publisher {
    core: Core,
    /// The last signed credential of each list asked for.
    signed: Mutex<HashMap<String, Signed>>,
}

#[derive(Clone)]
struct Signed {
    /// The list's revision it shows.
    revision: u64,
    jwt: String,
    at: Instant,
}

impl Signed {
    /// Weak: the same revision signed again (after a restart) has other
    /// bytes but the same meaning.
    fn etag(&self) -> String {
        format!("W/\"{}\"", self.revision)
    }
}

async fn answer(
    State(publisher): State<Arc<Publisher>>,
    Path(list_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let signed = match publisher.current(&list_id).await {
        Ok(Some(signed)) => signed,
        Ok(None) => {
            return problem(StatusCode::NOT_FOUND, "not_found", "no such status list");
        }
        Err(e) => {
            tracing::error!(error = %e, list = %list_id, "serving a status list failed");
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            );
        }
    };
    let etag = signed.etag();
    let max_age = publisher
        .core
        .config
        .status
        .resign_interval_ms
        .div_ceil(1000);
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches(v, &etag));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/vc+jwt")], signed.jwt).into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    response
}

/// If-None-Match against our (weak) ETag: weak comparison, as RFC 9110
/// has it for this header.
fn matches(if_none_match: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    if_none_match
        .split(',')
        .any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

impl Publisher {
    /// The list's signed credential: the cached one while it shows the
    /// current revision or is younger than the re-sign interval, else a
    /// new one. None for a list we do not have.
    async fn current(&self, list_id: &str) -> Result<Option<Signed>> {
        let core = &self.core;
        let Some(list) = core.store.status_list(list_id)? else {
            return Ok(None);
        };
        let interval = Duration::from_millis(core.config.status.resign_interval_ms);
        let mut signed = self.signed.lock().await;
        if let Some(s) = signed
            .get(list_id)
            .filter(|s| s.revision >= list.revision || s.at.elapsed() < interval)
        {
            return Ok(Some(s.clone()));
        }
        let revoked = core.store.revoked_indices(list_id)?;
        let new = Signed {
            revision: list.revision,
            jwt: sign(core, &list, &revoked)?,
            at: Instant::now(),
        };
        // What it shows was committed; nothing leaves before it is durable.
        core.store.durable().await?;
        signed.insert(list_id.to_string(), new.clone());
        Ok(Some(new))
    }
}

/// The status list credential of `list` with the `revoked` bits set.
fn sign(core: &Core, list: &StatusList, revoked: &[u32]) -> Result<String> {
    let issuer = core.store.did(&list.wallet_id, &list.issuer_did)?;
    let key = core.store.key(&list.wallet_id, &issuer.signing_key_id)?;
    let url = super::list_url(&core.endpoint, &list.id);
    let now = crate::now_secs();
    let payload = json!({
        "iss": issuer.did,
        "sub": format!("{url}#list"),
        "jti": url,
        "nbf": now,
        "iat": now,
        "vc": {
            "@context": ["https://www.w3.org/ns/credentials/v2"],
            "id": url,
            "type": ["VerifiableCredential", "BitstringStatusListCredential"],
            "issuer": issuer.did,
            "credentialSubject": {
                "id": format!("{url}#list"),
                "type": "BitstringStatusList",
                "statusPurpose": "revocation",
                "encodedList": super::encode_list(list.capacity, revoked)?,
            },
        },
    });
    crate::vc::sign_jwt(&core.keys, &issuer, &key, &payload)
        .map_err(|e| crate::error::Error::Crypto(e.to_string()))
}
