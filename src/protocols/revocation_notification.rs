//! Revocation Notification 2.0 (Aries RFC 0721 style): the issuer tells the
//! holder, in the credential's issue thread, that it revoked the credential
//! and why. The holder's stored credential then shows the revocation.

use serde_json::json;

use super::issue_credential::BY_PEER;
use crate::didcomm::Message;
use crate::error::{Error, Result};
use crate::store::{Connection, Revocation, Role, StoreTx};

pub const REVOKE: &str = "https://didcomm.org/revocation_notification/2.0/revoke";

/// Longest reason kept from a peer's notice: it is stored and listed.
const MAX_REASON: usize = 1024;

/// The notification of `credential_id`'s revocation, in thread `thid`.
pub fn revoke(thid: &str, credential_id: &str, reason: &str) -> Message {
    let mut m = Message::new(
        REVOKE,
        json!({ "credential_id": credential_id, "comment": reason }),
    );
    m.thid = Some(thid.to_string());
    m
}

/// Marks the credential the thread delivered as revoked. Only the issuer
/// of the thread (the connection's peer) can, and only for the credential
/// that thread delivered; a second notice changes nothing.
pub fn on_revoke(tx: &StoreTx, conn: &Connection, msg: &Message) -> Result<()> {
    let credential_id = msg.body["credential_id"]
        .as_str()
        .ok_or_else(|| Error::InvalidArgument("revoke: no credential_id".into()))?;
    let thid = msg.thread_id();
    let rec = tx
        .record_by_thid(&conn.wallet_id, thid)?
        .filter(|r| r.role == Role::Holder && r.connection_id == conn.id)
        .ok_or_else(|| Error::not_found("issue-credential thread", thid))?;
    if rec.credential_id.as_deref() != Some(credential_id) {
        return Err(Error::InvalidArgument(format!(
            "thread {thid} did not deliver credential {credential_id}"
        )));
    }
    let mut held = tx.credential(&conn.wallet_id, credential_id)?;
    if held.revocation.is_none() {
        held.revocation = Some(Revocation {
            at_ms: crate::now_ms(),
            reason: crate::error::clip(
                msg.body["comment"].as_str().unwrap_or_default(),
                MAX_REASON,
            ),
            by: BY_PEER.into(),
        });
        tx.put_credential(&held)?;
    }
    Ok(())
}
