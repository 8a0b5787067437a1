//! One delivery attempt: pack the entry (authcrypt) and post it to the
//! recipient's endpoint, or hand it to our own inbox when this daemon holds
//! the recipient.

use super::super::{ENCRYPTED_MEDIA_TYPE, Message, Transport, inbox};
use super::Failure;
use crate::did;
use crate::error::Error;
use crate::store::OutboxEntry;

/// The destination an entry's sends count against: this daemon, or the
/// origin of the recipient's endpoint.
pub(super) fn destination(transport: &Transport, entry: &OutboxEntry) -> String {
    if let Ok(Some(_)) = transport.core.store.did_owner(&entry.to) {
        return "local".into();
    }
    did::resolve(&entry.to)
        .ok()
        .and_then(|d| d.endpoint().map(str::to_string))
        .and_then(|e| url::Url::parse(&e).ok())
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|| "unresolvable".into())
}

/// Packs and delivers one entry; returns the message type.
pub(super) async fn deliver(transport: &Transport, entry: &OutboxEntry) -> Result<String, Failure> {
    let core = &transport.core;
    let internal = |e: Error| Failure::permanent(e.to_string());
    let message: Message = serde_json::from_str(&entry.message)
        .map_err(|e| Failure::permanent(format!("stored outbox message: {e}")))?;
    let from = core
        .store
        .did(&entry.wallet_id, &entry.from)
        .map_err(internal)?;
    let packed = core
        .envelopes
        .pack_authcrypt(&from, &entry.to, &message)
        .map_err(internal)?;
    if core.store.did_owner(&entry.to).map_err(internal)?.is_some() {
        return match inbox::receive(transport, packed.as_bytes()).await {
            Ok(_) => Ok(message.typ),
            Err(e @ (Error::ResourceExhausted(_) | Error::Storage(_))) => {
                Err(Failure::retry(e.to_string()))
            }
            Err(e) => Err(internal(e)),
        };
    }
    let endpoint = did::resolve(&entry.to)
        .map_err(|e| internal(e.into()))?
        .endpoint()
        .map(str::to_string)
        .ok_or_else(|| Failure::permanent(format!("{} has no DIDComm endpoint", entry.to)))?;
    let response = transport
        .inner
        .http
        .post(&endpoint)
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
