//! Fills a store with finished flows before an agent opens it, so the
//! benchmark can measure whether the cost per flow grows with what is stored.
//! Each seeded flow leaves what a real one leaves on its side: the record and
//! its thread index, its last event, the seen message ids and, for the
//! holder, the credential.

use serde_json::{Map, Value, json};

use crate::error::Result;
use crate::store::{CredentialRecord, RecordEvent, RecordState, Role, Store, StoredCredential};
use crate::wallet::DEFAULT_WALLET;

const BATCH: usize = 500;

/// Writes `flows` finished flows of `role` into the default wallet of the
/// store at `path`, then flushes and closes it.
pub fn seed(path: &std::path::Path, role: Role, flows: usize) -> Result<()> {
    let store = Store::open(path)?;
    let claims: Map<String, Value> =
        serde_json::from_value(json!({ "name": "Alice Example", "degree": "BSc" }))
            .expect("an object");
    let now = crate::now_ms();
    for start in (0..flows).step_by(BATCH) {
        let batch: Vec<usize> = (start..flows.min(start + BATCH)).collect();
        store.transact(|tx| {
            for &i in &batch {
                let rec = record(role, i, &claims, now);
                tx.put_record(None, &rec)?;
                tx.push_event(RecordEvent {
                    seq: 0,
                    wallet_id: rec.wallet_id.clone(),
                    record_id: rec.id.clone(),
                    thid: rec.thid.clone(),
                    role,
                    old_state: None,
                    new_state: rec.state,
                    reason: None,
                    at_ms: now,
                    ack_received: rec.ack_received,
                })?;
                for m in 0..2 {
                    tx.mark_seen(DEFAULT_WALLET, &format!("seed-{i}-{m}"), i64::MAX)?;
                }
                if role == Role::Holder {
                    tx.put_credential(&credential(&rec))?;
                }
            }
            Ok(())
        })?;
    }
    store.flush()
}

fn record(role: Role, i: usize, claims: &Map<String, Value>, now: i64) -> CredentialRecord {
    let holder = role == Role::Holder;
    CredentialRecord {
        id: format!("seed-record-{i:08}"),
        wallet_id: DEFAULT_WALLET.into(),
        role,
        state: if holder {
            RecordState::CredentialReceived
        } else {
            RecordState::CredentialSent
        },
        version: 4,
        thid: format!("seed-thread-{i:08}"),
        connection_id: "seed-connection".into(),
        our_did: "did:peer:2.seed-ours".into(),
        their_did: "did:peer:2.seed-theirs".into(),
        claims: claims.clone(),
        types: vec!["SeededCredential".into()],
        schema_id: None,
        validity_period_secs: 0,
        automatic_issuance: true,
        idempotency_key: None,
        issuer_did: "did:key:z6Mkseed".into(),
        subject_did: Some("did:key:z6Mkseedsubject".into()),
        challenge: format!("{i:032x}"),
        credential_id: Some(format!("urn:uuid:seed-{i:08}")),
        ack_received: !holder,
        ack_requested: true,
        domain: String::new(),
        format: "prism/jwt".into(),
        created_by: String::new(),
        updated_by: String::new(),
        status: None,
        revocation: None,
        issued_at_ms: Some(now),
        template_id: None,
        contexts: vec![],
        draft_expires_in_secs: 0,
        credential_expires_at: None,
        claim_link: None,
        correlation_id: None,
        reference_id: None,
        collection_id: None,
        data_deleted_at_ms: None,
        problem: None,
        comment: None,
        expires_at_ms: None,
        deadline_ms: None,
        meta_retries: 0,
        meta_next_retry_ms: None,
        meta_last_failure: None,
        created_at_ms: now,
        updated_at_ms: now,
    }
}

fn credential(rec: &CredentialRecord) -> StoredCredential {
    StoredCredential {
        created_by: String::new(),
        revocation: None,
        status_checked_at_ms: None,
        status_check_error: None,
        id: rec.credential_id.clone().unwrap_or_default(),
        wallet_id: rec.wallet_id.clone(),
        record_id: rec.id.clone(),
        thid: rec.thid.clone(),
        issuer: rec.issuer_did.clone(),
        subject: rec.subject_did.clone().unwrap_or_default(),
        types: rec.types.clone(),
        claims: rec.claims.clone(),
        // About the size of a real VC-JWT.
        jwt: "e".repeat(900),
        not_before: 0,
        expires: None,
        received_at_ms: rec.created_at_ms,
    }
}
