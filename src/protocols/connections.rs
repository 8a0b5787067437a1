//! Connections made with Out-of-Band 2.0 invitations.
//!
//! The inviter makes a fresh did:peer:2 and puts it in the invitation's
//! `from`. The invitee makes its own fresh did:peer:2 and answers with a
//! trust ping whose `pthid` is the invitation id; that first authenticated
//! message tells the inviter the invitee's DID. Each connection has its own
//! DID on our side, so the recipient DID of a message names its connection.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::trust_ping;
use crate::Core;
use crate::after::After;
use crate::did;
use crate::didcomm::{Message, outbox};
use crate::error::{Error, Result};
use crate::store::{
    Connection, ConnectionRole, ConnectionState, DidMethod, InboxEntry, OutboxEntry, StoreTx,
};
use crate::wallet;

pub const INVITATION: &str = "https://didcomm.org/out-of-band/2.0/invitation";

/// A new connection waiting for its invitation to be accepted, and the invitation.
pub struct Invitation {
    pub connection: Connection,
    pub url: String,
    pub message: Message,
}

pub fn create_invitation(
    core: &Core,
    wallet_id: &str,
    label: &str,
    goal_code: &str,
    goal: &str,
) -> Result<Invitation> {
    let (new, invitation) = new_invitation(core, wallet_id, label, goal_code, goal);
    core.store.transact(|tx| {
        wallet::put_did(tx, &new)?;
        tx.put_connection(&invitation.connection)
    })?;
    Ok(invitation)
}

/// An invitation and the connection and DID it needs, not stored yet (a
/// claim link stores them with its offer).
pub fn new_invitation(
    core: &Core,
    wallet_id: &str,
    label: &str,
    goal_code: &str,
    goal: &str,
) -> (wallet::NewDid, Invitation) {
    let new = wallet::new_did(
        &core.keys,
        &core.endpoint,
        wallet_id,
        DidMethod::Peer2,
        "connection",
    );
    let mut body = json!({ "accept": ["didcomm/v2"] });
    for (k, v) in [("label", label), ("goal_code", goal_code), ("goal", goal)] {
        if !v.is_empty() {
            body[k] = Value::String(v.to_string());
        }
    }
    let mut message = Message::new(INVITATION, body);
    message.from = Some(new.record.did.clone());
    let now = crate::now_ms();
    let connection = Connection {
        id: uuid::Uuid::new_v4().to_string(),
        wallet_id: wallet_id.to_string(),
        state: ConnectionState::InvitationSent,
        role: ConnectionRole::Inviter,
        our_did: new.record.did.clone(),
        their_did: None,
        invitation_id: message.id.clone(),
        label: label.to_string(),
        created_at_ms: now,
        updated_at_ms: now,
        problem: None,
        offer_thid: None,
    };
    let url = invitation_url(&core.endpoint, &message);
    (
        new,
        Invitation {
            connection,
            url,
            message,
        },
    )
}

/// `<endpoint>?_oob=<base64url of the invitation>`.
pub fn invitation_url(endpoint: &str, invitation: &Message) -> String {
    format!(
        "{endpoint}?_oob={}",
        URL_SAFE_NO_PAD.encode(invitation.to_json())
    )
}

/// Parses an `…?_oob=<base64url>` invitation URL.
pub fn parse_invitation(invitation_url: &str) -> Result<Message> {
    let bad = |why: String| Error::InvalidArgument(format!("invitation URL does not parse: {why}"));
    let url = url::Url::parse(invitation_url.trim()).map_err(|e| bad(e.to_string()))?;
    let oob = url
        .query_pairs()
        .find(|(k, _)| k == "_oob")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| bad("no _oob query parameter".into()))?;
    let json = URL_SAFE_NO_PAD
        .decode(oob.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(&oob))
        .map_err(|_| bad("_oob is not base64url".into()))?;
    let message: Message = serde_json::from_slice(&json)
        .map_err(|e| bad(format!("_oob is not an invitation: {e}")))?;
    if message.typ != INVITATION {
        return Err(bad(format!(
            "type is {}, expected {INVITATION}",
            message.typ
        )));
    }
    let from = message
        .from
        .as_deref()
        .ok_or_else(|| bad("the invitation has no `from` DID".into()))?;
    let resolved = did::resolve(from).map_err(|e| bad(e.to_string()))?;
    if resolved.agreement.is_empty() {
        return Err(bad("the inviter's DID has no key-agreement key".into()));
    }
    Ok(message)
}

/// Accepts an invitation: a fresh did:peer:2, a connection in `Requested`,
/// and a trust ping to the inviter with `pthid` = the invitation id.
/// Returns once all of it is durable.
pub async fn accept_invitation(
    core: &Core,
    wallet_id: &str,
    invitation_url: &str,
    label: &str,
) -> Result<Connection> {
    let invitation = parse_invitation(invitation_url)?;
    let inviter = invitation
        .from
        .clone()
        .expect("checked by parse_invitation");
    if core
        .store
        .did_owner(&inviter)?
        .is_some_and(|d| d.wallet_id == wallet_id)
    {
        return Err(Error::InvalidArgument(
            "a wallet cannot accept its own invitation".into(),
        ));
    }
    let new = wallet::new_did(
        &core.keys,
        &core.endpoint,
        wallet_id,
        DidMethod::Peer2,
        "connection",
    );
    let now = crate::now_ms();
    let label = if label.is_empty() {
        invitation.body["label"].as_str().unwrap_or_default()
    } else {
        label
    };
    let connection = Connection {
        id: uuid::Uuid::new_v4().to_string(),
        wallet_id: wallet_id.to_string(),
        state: ConnectionState::Requested,
        role: ConnectionRole::Invitee,
        our_did: new.record.did.clone(),
        their_did: Some(inviter.clone()),
        invitation_id: invitation.id.clone(),
        label: label.to_string(),
        created_at_ms: now,
        updated_at_ms: now,
        problem: None,
        offer_thid: None,
    };
    let mut ping = trust_ping::ping(true);
    ping.pthid = Some(invitation.id.clone());
    let offer = attached_offer(&invitation)?;
    let connection = Connection {
        offer_thid: offer.as_ref().map(|o| o.thread_id().to_string()),
        ..connection
    };
    let ((), after) = After::transact(core, |tx, after| {
        wallet::put_did(tx, &new)?;
        tx.put_connection(&connection)?;
        outbox::enqueue(tx, after, wallet_id, &new.record.did, &inviter, &ping)?;
        match &offer {
            // A claim link: the offer arrives with the invitation.
            Some(offer) => super::issue_credential::handle(core, tx, &connection, offer, after),
            None => Ok(()),
        }
    })?;
    after.publish(core).await?;
    Ok(connection)
}

/// The credential offer an invitation carries (a claim link), if any: an
/// attachment holding an issue-credential offer from the inviter.
fn attached_offer(invitation: &Message) -> Result<Option<Message>> {
    let Some(json) = invitation
        .attachments
        .iter()
        .find_map(|a| a.data.get("json"))
    else {
        return Ok(None);
    };
    let mut offer: Message = serde_json::from_value(json.clone()).map_err(|e| {
        Error::InvalidArgument(format!("the invitation's attachment is not a message: {e}"))
    })?;
    // Ours leave the sender out (a QR code has little room): it is the inviter.
    if offer.from.is_none() {
        offer.from.clone_from(&invitation.from);
    }
    if offer.typ != super::issue_credential::OFFER {
        return Err(Error::InvalidArgument(format!(
            "the invitation carries a {}, not a credential offer",
            crate::error::clip(&offer.typ, 96)
        )));
    }
    if offer.from != invitation.from {
        return Err(Error::InvalidArgument(
            "the invitation's offer is not from the inviter".into(),
        ));
    }
    Ok(Some(offer))
}

/// Finds the connection an inbound message belongs to and checks that its
/// sender is that connection's peer. The first message on an invitation
/// (its `pthid` is the invitation id) binds the peer; the invitee's
/// connection becomes Active on the inviter's first answer.
pub fn bind_peer(
    tx: &StoreTx,
    entry: &InboxEntry,
    msg: &Message,
    sender: &str,
) -> Result<Connection> {
    let mut conn = tx.connection_by_our_did(&entry.recipient)?.ok_or_else(|| {
        Error::PermissionDenied(format!("no connection uses our DID {}", entry.recipient))
    })?;
    match (&conn.their_did, conn.state) {
        (None, ConnectionState::InvitationSent) => {
            if msg.pthid.as_deref() != Some(conn.invitation_id.as_str()) {
                return Err(Error::PermissionDenied(
                    "the first message on an invitation must have pthid = the invitation id".into(),
                ));
            }
            conn.their_did = Some(sender.to_string());
        }
        (Some(peer), _) if peer == sender => {}
        (peer, _) => {
            return Err(Error::PermissionDenied(format!(
                "{sender} is not the peer of connection {} ({})",
                conn.id,
                peer.as_deref().unwrap_or("none")
            )));
        }
    }
    if conn.state != ConnectionState::Active {
        conn.state = ConnectionState::Active;
        conn.updated_at_ms = crate::now_ms();
        tx.put_connection(&conn)?;
        tracing::info!(connection = %conn.id, peer = sender, "connection active");
    }
    Ok(conn)
}

/// The outbox gave up on a message: when it is an invitee's first message
/// on an invitation (the inviter refused it, e.g. because someone else
/// used the invitation first, or it never got through), the connection
/// is Failed, with the reason, instead of Requested forever.
/// Returns the connection when it failed.
pub fn on_delivery_failed(tx: &StoreTx, entry: &OutboxEntry) -> Result<Option<Connection>> {
    let Some(mut conn) = tx.connection_by_our_did(&entry.from)? else {
        return Ok(None);
    };
    let first = serde_json::from_str::<serde_json::Value>(&entry.message)
        .is_ok_and(|m| m["pthid"].as_str() == Some(conn.invitation_id.as_str()));
    if conn.role != ConnectionRole::Invitee
        || conn.state != ConnectionState::Requested
        || conn.their_did.as_deref() != Some(entry.to.as_str())
        || !first
    {
        return Ok(None);
    }
    conn.state = ConnectionState::Failed;
    conn.updated_at_ms = crate::now_ms();
    conn.problem = Some(crate::error::clip(
        &format!(
            "the inviter did not take our first message: {}",
            entry.last_error.as_deref().unwrap_or("undeliverable")
        ),
        512,
    ));
    tracing::warn!(connection = %conn.id, problem = conn.problem.as_deref(), "connection failed");
    tx.put_connection(&conn)?;
    Ok(Some(conn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_invitation_urls_are_invalid_arguments() {
        let inv = |json: &str| format!("http://x/?_oob={}", URL_SAFE_NO_PAD.encode(json));
        for url in [
            "not a url".to_string(),
            "http://example.com/didcomm".to_string(),
            "http://example.com/didcomm?_oob=%%%".to_string(),
            "http://example.com/didcomm?_oob=bm90IGpzb24".to_string(),
            inv(r#"{"id":"1","type":"https://didcomm.org/trust-ping/2.0/ping","body":{}}"#),
            inv(r#"{"id":"1","type":"https://didcomm.org/out-of-band/2.0/invitation","body":{}}"#),
            inv(
                r#"{"id":"1","type":"https://didcomm.org/out-of-band/2.0/invitation","from":"did:web:x","body":{}}"#,
            ),
        ] {
            let err = parse_invitation(&url).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{url}: {err}");
            assert!(err.to_string().contains("invitation URL does not parse"));
        }
    }
}
