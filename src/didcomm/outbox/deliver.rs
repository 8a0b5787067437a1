//! One delivery attempt: pack the entry (authcrypt) and post it to the
//! recipient's endpoint, or hand it to our own inbox when this daemon holds
//! the recipient.

use super::super::{ENCRYPTED_MEDIA_TYPE, Message, Transport, inbox};
use super::Failure;
use crate::did;
use crate::error::Error;
use crate::store::OutboxEntry;

/// Where an entry goes: to this daemon's own inbox, or to the endpoint of
/// the recipient's DID, or nowhere (why).
pub(super) enum Route {
    Local,
    Remote(String),
    Nowhere(String),
}

impl Route {
    /// The destination whose send slots this route uses: this daemon, or
    /// the scheme and authority of the endpoint.
    pub(super) fn lane(&self) -> String {
        match self {
            Route::Local => "local".into(),
            // scheme://authority, without a URL parse per send.
            Route::Remote(endpoint) => {
                let authority = endpoint.find("://").map_or(0, |i| i + 3);
                let end = endpoint[authority..]
                    .find(['/', '?', '#'])
                    .map_or(endpoint.len(), |i| authority + i);
                endpoint[..end].to_ascii_lowercase()
            }
            Route::Nowhere(_) => "nowhere".into(),
        }
    }
}

pub(super) fn route(transport: &Transport, entry: &OutboxEntry) -> Route {
    match transport.core.store.did_owner(&entry.to) {
        Ok(Some(_)) => return Route::Local,
        Ok(None) => {}
        Err(e) => return Route::Nowhere(e.to_string()),
    }
    match did::resolve(&entry.to) {
        Ok(d) => match d.endpoint() {
            Some(endpoint) => Route::Remote(endpoint.to_string()),
            None => Route::Nowhere(format!("{} has no DIDComm endpoint", entry.to)),
        },
        Err(e) => Route::Nowhere(e.to_string()),
    }
}

/// Packs and delivers one entry along `route`; returns the message type.
pub(super) async fn deliver(
    transport: &Transport,
    entry: &OutboxEntry,
    route: &Route,
) -> Result<String, Failure> {
    let core = &transport.core;
    let internal = |e: Error| Failure::permanent(e.to_string());
    let endpoint = match route {
        Route::Nowhere(why) => return Err(Failure::permanent(why.clone())),
        Route::Local => None,
        Route::Remote(endpoint) => Some(endpoint),
    };
    let message: Message = serde_json::from_str(&entry.message)
        .map_err(|e| Failure::permanent(format!("stored outbox message: {e}")))?;
    tracing::Span::current()
        .record("thid", message.thread_id())
        .record("type", message.typ.as_str());
    let from = core
        .store
        .did(&entry.wallet_id, &entry.from)
        .map_err(internal)?;
    tracing::debug!(r#type = %message.typ, id = %message.id, thid = ?message.thid,
        pthid = ?message.pthid, from = %entry.from, to = %entry.to,
        endpoint = endpoint.map_or("(local)", |e| e.as_str()), "message out");
    let packed = core
        .envelopes
        .pack_authcrypt(&from, &entry.to, &message)
        .map_err(internal)?;
    if let Some(endpoint) = endpoint
        && !transport.inner.private_allowed
    {
        crate::addresses::check_literal(endpoint).map_err(Failure::permanent)?;
    }
    let Some(endpoint) = endpoint else {
        return match inbox::receive(transport, packed.into()).await {
            Ok(_) => Ok(message.typ),
            Err(e @ (Error::ResourceExhausted(_) | Error::Storage(_))) => {
                Err(Failure::retry(e.to_string()))
            }
            Err(e) => Err(internal(e)),
        };
    };
    let response = transport
        .inner
        .http
        .post(endpoint)
        .header(reqwest::header::CONTENT_TYPE, ENCRYPTED_MEDIA_TYPE)
        .body(packed)
        .send()
        .await
        .map_err(|e| Failure::retry(format!("POST {endpoint}: {e}")))?;
    let status = response.status();
    if status.is_success() {
        return Ok(message.typ);
    }
    let body = response.text().await.unwrap_or_default();
    let why = format!(
        "POST {endpoint}: {status} {}",
        body.chars().take(200).collect::<String>()
    );
    // A refusal will not change by asking again; overload and timeouts may.
    let transient = status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429);
    Err(if transient {
        Failure::retry(why)
    } else {
        Failure::permanent(why)
    })
}

#[cfg(test)]
mod tests {
    use super::Route;

    #[test]
    fn lanes_are_per_origin() {
        let lane = |e: &str| Route::Remote(e.into()).lane();
        assert_eq!(
            lane("http://Peer.example:8080/didcomm"),
            "http://peer.example:8080"
        );
        assert_eq!(lane("https://a.example/x?y=1"), "https://a.example");
        assert_eq!(lane("https://a.example"), "https://a.example");
        assert_eq!(lane("https://a.example#frag"), "https://a.example");
        assert_eq!(Route::Local.lane(), "local");
    }
}
