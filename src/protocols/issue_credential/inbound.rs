//! What a peer's issue-credential message does, inside the transaction
//! that takes it in: an offer makes a holder record, a request is checked
//! (and issued at once with automatic issuance), a credential is verified
//! and stored, an ack completes the issuer's record, a problem report ends
//! the thread.

use super::actions::issue_in;
use super::machine::{self, Event};
use super::messages::{self, ACK, ISSUE, NOTIFICATION_ACK, OFFER, PROPOSE, REQUEST};
use super::{Inputs, Io, new_record, problem_report};
use crate::Core;
use crate::after::After;
use crate::didcomm::Message;
use crate::error::{Error, Result};
use crate::store::{Connection, CredentialRecord, Role, StoreTx, StoredCredential};
use crate::vc;

/// Handles an issue-credential message from the connection's peer.
pub fn handle(
    core: &Core,
    tx: &StoreTx,
    conn: &Connection,
    msg: &Message,
    after: &mut After,
) -> Result<()> {
    let io = &mut Io {
        core,
        tx,
        after,
        by: super::BY_PEER.into(),
    };
    match msg.typ.as_str() {
        OFFER => on_offer(io, conn, msg),
        REQUEST => on_request(io, conn, msg),
        ISSUE => on_credential(io, conn, msg),
        ACK | NOTIFICATION_ACK => {
            let cur = thread_record(tx, conn, msg, Role::Issuer)?;
            if !cur.ack_requested {
                tracing::debug!(record = %cur.id, "an ack we did not ask for; noted only");
                return Ok(());
            }
            let mut rec = cur.clone();
            rec.ack_received = true;
            io.advance(Some(&cur), &mut rec, Event::AckArrived, &Inputs::default())
        }
        PROPOSE => Err(Error::Unsupported(
            "propose-credential: this agent issues only what it offers; ask for an offer".into(),
        )),
        other => Err(Error::Unsupported(format!("message type {other}"))),
    }
}

/// The record of `msg`'s thread in the connection's wallet, checked to be
/// of `role` and with the connection's peer.
fn thread_record(
    tx: &StoreTx,
    conn: &Connection,
    msg: &Message,
    role: Role,
) -> Result<CredentialRecord> {
    let thid = msg.thread_id();
    let mut rec = tx
        .record_by_thid(&conn.wallet_id, thid)?
        .filter(|r| r.role == role)
        .ok_or_else(|| Error::not_found("issue-credential thread", thid))?;
    // A claim link's offer was made before its connection had a peer: the
    // peer the connection bound (the first to answer the invitation) is it.
    if rec.connection_id == conn.id && rec.their_did.is_empty() {
        rec.their_did = conn.their_did.clone().unwrap_or_default();
    }
    if rec.connection_id != conn.id || Some(&rec.their_did) != conn.their_did.as_ref() {
        return Err(Error::PermissionDenied(format!(
            "thread {thid} belongs to another peer"
        )));
    }
    Ok(rec)
}

/// The thread's record, if `event` is legal for it now. An illegal one (a
/// second request, a finished thread) refuses the message and leaves the
/// record as it is; a failing check later is a Fail transition instead.
fn expecting(
    tx: &StoreTx,
    conn: &Connection,
    msg: &Message,
    role: Role,
    event: &Event,
) -> Result<CredentialRecord> {
    let cur = thread_record(tx, conn, msg, role)?;
    machine::transition(cur.role, Some(cur.state), event)
        .map_err(|e| Error::FailedPrecondition(e.to_string()))?;
    Ok(cur)
}

fn on_offer(io: &mut Io, conn: &Connection, msg: &Message) -> Result<()> {
    let thid = msg.thread_id();
    if io.tx.record_by_thid(&conn.wallet_id, thid)?.is_some() {
        return Err(Error::FailedPrecondition(format!(
            "thread {thid} already has a record"
        )));
    }
    let limits = &io.core.config.issuance;
    let open = io.tx.open_records(&conn.wallet_id, &conn.id)?;
    if open >= limits.max_open_records_per_connection {
        return Err(Error::ResourceExhausted(format!(
            "{open} unfinished records with this peer (issuance.max_open_records_per_connection)"
        )));
    }
    let terms = messages::parse_offer(msg)?;
    check_claims_size(&terms.claims, limits.max_claims_bytes)?;
    let expires = msg.expires_time.map(crate::secs_to_ms);
    let mut rec = new_record(
        io.core,
        Role::Holder,
        conn,
        thid.to_string(),
        terms,
        expires,
    );
    io.advance(None, &mut rec, Event::OfferArrived, &Inputs::default())
}

/// Claims of at most `max` bytes as JSON: a peer's offer is stored and
/// listed, so its size is ours to bound.
pub(super) fn check_claims_size(
    claims: &serde_json::Map<String, serde_json::Value>,
    max: usize,
) -> Result<()> {
    let size = serde_json::to_vec(claims).map_or(usize::MAX, |v| v.len());
    if size > max {
        return Err(Error::InvalidArgument(format!(
            "claims of {size} bytes, over issuance.max_claims_bytes ({max})"
        )));
    }
    Ok(())
}

fn on_request(io: &mut Io, conn: &Connection, msg: &Message) -> Result<()> {
    let cur = expecting(io.tx, conn, msg, Role::Issuer, &Event::RequestArrived)?;
    let mut rec = cur.clone();
    let subject = match check_proof(msg, &cur) {
        Ok(subject) => subject,
        Err(why) => {
            let inputs = Inputs {
                problem_code: "e.p.msg.invalid-request",
                reason: Some(why),
                ..Default::default()
            };
            return io.advance(Some(&cur), &mut rec, Event::Fail, &inputs);
        }
    };
    rec.subject_did = Some(subject);
    rec.expires_at_ms = msg.expires_time.map(crate::secs_to_ms);
    io.advance(
        Some(&cur),
        &mut rec,
        Event::RequestArrived,
        &Inputs::default(),
    )?;
    if rec.automatic_issuance {
        issue_in(io, rec)?;
    }
    Ok(())
}

/// The subject DID a request proves control of, or why it does not.
fn check_proof(msg: &Message, rec: &CredentialRecord) -> std::result::Result<String, String> {
    let jwt = messages::attached_jwt(msg).map_err(|e| e.to_string())?;
    let proof = vc::verify_jwt(&jwt).map_err(|e| format!("request proof: {e}"))?;
    let p = &proof.payload;
    let subject = p["iss"].as_str().unwrap_or_default().to_string();
    if p["nonce"] != rec.challenge.as_str() {
        return Err("request proof: nonce is not the offer's challenge".into());
    }
    // `aud` is a string or an array of them (RFC 7519); Identus sends the latter.
    let audience = rec.audience();
    let aimed = match &p["aud"] {
        serde_json::Value::String(aud) => aud == audience,
        serde_json::Value::Array(auds) => auds.iter().any(|a| a == audience),
        _ => false,
    };
    if !aimed {
        return Err(format!("request proof: aud is not {audience}"));
    }
    Ok(subject)
}

fn on_credential(io: &mut Io, conn: &Connection, msg: &Message) -> Result<()> {
    let cur = expecting(io.tx, conn, msg, Role::Holder, &Event::CredentialVerified)?;
    let mut rec = cur.clone();
    // DIDComm v2.1 asks with an array of ids; didcomm-jvm with `true`.
    rec.ack_requested = match msg.extra.get("please_ack") {
        Some(serde_json::Value::Array(ids)) => !ids.is_empty(),
        Some(serde_json::Value::Bool(asked)) => *asked,
        _ => false,
    };
    match verify_credential(msg, &cur) {
        Ok(credential) => {
            rec.credential_id = Some(credential.id.clone());
            rec.issued_at_ms = Some(crate::now_ms());
            let inputs = Inputs {
                credential: Some(credential),
                ..Default::default()
            };
            io.advance(Some(&cur), &mut rec, Event::CredentialVerified, &inputs)
        }
        Err(why) => {
            let inputs = Inputs {
                problem_code: "e.p.msg.invalid-credential",
                reason: Some(why),
                ..Default::default()
            };
            io.advance(Some(&cur), &mut rec, Event::Fail, &inputs)
        }
    }
}

/// Who may have issued the credential of a holder's record: the issuer
/// the offer named; else the DID its proof was addressed to (when that is
/// a DID) or the connection's peer itself.
pub(super) fn expected_issuers(rec: &CredentialRecord) -> Vec<&str> {
    if !rec.issuer_did.is_empty() {
        return vec![rec.issuer_did.as_str()];
    }
    let mut who = vec![rec.their_did.as_str()];
    if rec.domain.starts_with("did:") {
        who.push(rec.domain.as_str());
    }
    who
}

/// Checks a received credential against the record: signature by the
/// offer's issuer (see [`expected_issuers`]), our subject DID, and the
/// offered claims and types.
fn verify_credential(
    msg: &Message,
    rec: &CredentialRecord,
) -> std::result::Result<StoredCredential, String> {
    let jwt = messages::attached_jwt(msg).map_err(|e| e.to_string())?;
    let subject = rec.subject_did.as_deref().unwrap_or_default();
    let c = vc::verify(&jwt, None, subject, crate::now_secs())
        .map_err(|e| format!("credential: {e}"))?;
    let issuers = expected_issuers(rec);
    if !issuers.contains(&c.issuer.as_str()) {
        return Err(format!(
            "credential: issued by {}, not by {}",
            crate::error::clip(&c.issuer, 96),
            issuers.join(" or ")
        ));
    }
    if c.claims != rec.claims {
        return Err("credential: the claims are not the offered ones".into());
    }
    if let Some(t) = rec.types.iter().find(|t| !c.types.contains(t)) {
        return Err(format!("credential: type {t} was offered but is missing"));
    }
    Ok(StoredCredential {
        id: c.id,
        wallet_id: rec.wallet_id.clone(),
        record_id: rec.id.clone(),
        thid: rec.thid.clone(),
        issuer: c.issuer,
        subject: c.subject,
        types: c.types,
        claims: c.claims,
        jwt,
        not_before: c.not_before,
        expires: c.expires,
        received_at_ms: crate::now_ms(),
        // Delivery keeps `updated_by`, so this is who accepted the offer.
        created_by: rec.updated_by.clone(),
        revocation: None,
        status_checked_at_ms: None,
        status_check_error: None,
    })
}

/// A problem report in an issue-credential thread (found by `pthid`, or
/// `thid` as some peers send it) moves an unfinished record to
/// ProblemReportReceived: an error that ends the thread (`e.p.…`) always,
/// and one that refused a single message (`e.m.…`, such as
/// `unknown-thread`) too, since the record would otherwise wait for an
/// answer the peer will not send. A finished record is ended only by a
/// thread-ending error (a holder refusing the credential). Returns false
/// when the report is not about a record of the connection's wallet, is
/// a warning, or leaves the record as it is.
pub fn on_problem(
    core: &Core,
    tx: &StoreTx,
    conn: &Connection,
    msg: &Message,
    after: &mut After,
) -> Result<bool> {
    if !problem_report::is_error(msg) {
        return Ok(false);
    }
    let io = &mut Io {
        core,
        tx,
        after,
        by: super::BY_PEER.into(),
    };
    for thid in [msg.pthid.as_deref(), msg.thid.as_deref()]
        .into_iter()
        .flatten()
    {
        let Some(cur) = tx.record_by_thid(&conn.wallet_id, thid)? else {
            continue;
        };
        if cur.connection_id != conn.id {
            return Err(Error::PermissionDenied(format!(
                "thread {thid} belongs to another peer"
            )));
        }
        if cur.state.is_final() && !problem_report::ends_thread(msg) {
            return Ok(false);
        }
        let reason = problem_report::describe(msg);
        let mut rec = cur.clone();
        io.advance(
            Some(&cur),
            &mut rec,
            Event::ProblemArrived,
            &Inputs::because(reason),
        )?;
        return Ok(true);
    }
    Ok(false)
}
