//! What the issuer and the holder ask for over the control plane besides
//! offers (`offers.rs`): issue, withdraw; accept, reject; delete a held
//! credential. Each is one action on
//! one record, compare-and-swap on the version the caller saw, batched
//! with concurrent actions into one transaction ([`Issuance::act_on`]).

use super::machine::Event;
use super::{Inputs, Io, Issuance, current, messages, user_did_key};
use crate::error::{Error, Result};
use crate::store::{
    Connection, ConnectionState, CredentialRecord, DidMethod, RecordState, Role, StatusSlot,
    StoreTx,
};
use crate::{Core, status, vc, wallet};

impl Issuance {
    /// Signs the credential for a record in RequestReceived and sends it
    /// (CredentialPending → CredentialGenerated → CredentialSent on delivery).
    pub async fn issue(&self, wallet: &str, record_id: &str) -> Result<CredentialRecord> {
        let core = &self.core;
        let seen = require(
            core,
            wallet,
            record_id,
            Role::Issuer,
            RecordState::RequestReceived,
            "issued",
        )?;
        self.act_on(move |io| {
            let cur = current(io.tx, &seen)?;
            issue_in(io, cur)
        })
        .await
    }

    /// Accepts an offer: the request proves control of the subject DID (the
    /// one given, or a fresh did:key).
    pub async fn accept_offer(
        &self,
        wallet: &str,
        record_id: &str,
        subject_did: Option<&str>,
    ) -> Result<CredentialRecord> {
        let core = &self.core;
        let seen = require(
            core,
            wallet,
            record_id,
            Role::Holder,
            RecordState::OfferReceived,
            "accepted",
        )?;
        if seen.expires_at_ms.is_some_and(|e| e <= crate::now_ms()) {
            self.abandon(&seen, "the offer expired before it was accepted".into())
                .await?;
            return Err(Error::FailedPrecondition(format!(
                "the offer of record {record_id} has expired"
            )));
        }
        if seen.audience().is_empty() || seen.challenge.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "the offer of record {record_id} names no challenge or audience \
                 (options.challenge, options.domain): no issuer could accept a proof for it"
            )));
        }
        // A fresh subject DID is stored with the accept, so an accept that
        // loses a race leaves no unused DID behind.
        let (subject, key, fresh) = match subject_did.filter(|d| !d.is_empty()) {
            Some(d) => {
                let subject = user_did_key(core, wallet, d, "subject_did")?;
                let key = core.store.key(wallet, &subject.signing_key_id)?;
                (subject, key, None)
            }
            None => {
                let new = wallet::new_did(
                    &core.keys,
                    &core.endpoint,
                    wallet,
                    DidMethod::Key,
                    "subject",
                );
                (new.record.clone(), new.signing_key().clone(), Some(new))
            }
        };
        let proof = vc::sign_jwt(
            &core.keys,
            &subject,
            &key,
            &messages::proof_payload(&subject.did, &seen),
        )
        .map_err(|e| Error::Crypto(e.to_string()))?;
        let inputs = Inputs {
            proof_jwt: Some(proof),
            ..Default::default()
        };
        self.act(&seen, Event::Accept, inputs, move |tx, rec| {
            if let Some(new) = &fresh {
                wallet::put_did(tx, new)?;
            }
            rec.subject_did = Some(subject.did.clone());
            rec.expires_at_ms = None;
            Ok(())
        })
        .await
    }

    /// Rejects an offer with a problem report to the issuer.
    pub async fn reject_offer(
        &self,
        wallet: &str,
        record_id: &str,
        reason: &str,
    ) -> Result<CredentialRecord> {
        let seen = require(
            &self.core,
            wallet,
            record_id,
            Role::Holder,
            RecordState::OfferReceived,
            "rejected",
        )?;
        let reason = if reason.is_empty() {
            "the holder rejected the offer"
        } else {
            reason
        };
        let inputs = Inputs {
            problem_code: "e.p.req.rejected",
            reason: Some(reason.to_string()),
            ..Default::default()
        };
        self.act(&seen, Event::Fail, inputs, |_, _| Ok(())).await
    }

    /// Issuer: withdraws an offer the holder has not claimed. The holder is
    /// told with a problem report in the thread and both records end. Once
    /// the holder's request arrived (claimed), or while the offer is still
    /// on its way (OfferPending: the report could overtake it), it is refused.
    pub async fn withdraw_offer(
        &self,
        wallet: &str,
        record_id: &str,
        reason: &str,
    ) -> Result<CredentialRecord> {
        let seen = self.core.store.record(wallet, record_id)?;
        if seen.role == Role::Issuer
            && matches!(
                seen.state,
                RecordState::RequestReceived
                    | RecordState::CredentialPending
                    | RecordState::CredentialGenerated
                    | RecordState::CredentialSent
            )
        {
            return Err(Error::FailedPrecondition(format!(
                "the holder has claimed the offer of record {record_id} (its request arrived; {:?}): \
                 it can no longer be withdrawn",
                seen.state
            )));
        }
        if seen.role == Role::Issuer && seen.state == RecordState::OfferPending {
            return Err(Error::FailedPrecondition(format!(
                "the offer of record {record_id} is still being delivered (OfferPending); \
                 withdraw it once it is OfferSent"
            )));
        }
        let seen = require(
            &self.core,
            wallet,
            record_id,
            Role::Issuer,
            RecordState::OfferSent,
            "withdrawn",
        )?;
        let reason = if reason.is_empty() {
            "the issuer withdrew the offer".to_string()
        } else {
            format!(
                "the issuer withdrew the offer: {}",
                crate::error::clip(reason, 1024)
            )
        };
        let inputs = Inputs {
            problem_code: "e.p.offer-withdrawn",
            reason: Some(reason),
            ..Default::default()
        };
        self.act(&seen, Event::Fail, inputs, |_, _| Ok(())).await
    }

    async fn abandon(&self, seen: &CredentialRecord, reason: String) -> Result<CredentialRecord> {
        self.act(seen, Event::Abandon, Inputs::because(reason), |_, _| Ok(()))
            .await
    }

    /// Applies `event` to the record as the caller saw it (compare-and-swap on
    /// its version), after `edit` changed its data.
    pub(super) async fn act(
        &self,
        seen: &CredentialRecord,
        event: Event,
        inputs: Inputs,
        edit: impl Fn(&StoreTx, &mut CredentialRecord) -> Result<()> + Send + Sync + 'static,
    ) -> Result<CredentialRecord> {
        let seen = seen.clone();
        self.act_on(move |io| {
            let cur = current(io.tx, &seen)?;
            let mut rec = cur.clone();
            edit(io.tx, &mut rec)?;
            io.advance(Some(&cur), &mut rec, event.clone(), &inputs)?;
            Ok(rec)
        })
        .await
    }

    /// Issuer: deletes the data (claims, comment) of an offer that ended
    /// without being claimed (discarded, withdrawn, rejected, expired): the
    /// same rule as withdrawing. A claimed one (a request arrived) is the
    /// record of an issuance and keeps its data; a live one must be
    /// withdrawn first. The record itself stays, marked.
    pub async fn delete_record_data(
        &self,
        wallet: &str,
        record_id: &str,
    ) -> Result<CredentialRecord> {
        let core = &self.core;
        let rec = core.store.transact(|tx| {
            let cur = tx.record(wallet, record_id)?;
            if cur.role != Role::Issuer || cur.subject_did.is_some() {
                return Err(Error::FailedPrecondition(format!(
                    "record {record_id} was claimed (a request arrived) or is not an offer \
                     of ours: its data stays"
                )));
            }
            if !cur.state.is_final() {
                return Err(Error::FailedPrecondition(format!(
                    "record {record_id} is {:?}: withdraw or discard it first",
                    cur.state
                )));
            }
            let mut rec = cur.clone();
            rec.claims.clear();
            rec.comment = None;
            rec.version += 1;
            rec.updated_at_ms = crate::now_ms();
            rec.data_deleted_at_ms.get_or_insert(rec.updated_at_ms);
            tx.put_record(Some(&cur), &rec)?;
            Ok(rec)
        })?;
        core.store.durable().await?;
        Ok(rec)
    }

    /// Deletes a stored credential.
    pub async fn delete_credential(&self, wallet: &str, id: &str) -> Result<()> {
        let core = &self.core;
        core.store
            .transact(|tx| tx.remove_credential(wallet, id).map(|_| ()))?;
        core.store.durable().await.map(|_| ())
    }
}

pub(super) fn require_active(conn: &Connection) -> Result<()> {
    match (&conn.their_did, conn.state) {
        (Some(_), ConnectionState::Active) => Ok(()),
        _ => Err(Error::FailedPrecondition(format!(
            "connection {} is {:?}, not Active",
            conn.id, conn.state
        ))),
    }
}

struct Signed {
    id: String,
    jwt: String,
    status: StatusSlot,
}

/// Signs the record's credential, reading the issuer key through `tx`,
/// with a new index in the issuer DID's status list.
fn sign_credential(core: &Core, tx: &StoreTx, rec: &CredentialRecord) -> Result<Signed> {
    let subject = rec.subject_did.as_deref().ok_or_else(|| {
        Error::FailedPrecondition(format!("record {} has no subject DID", rec.id))
    })?;
    let issuer = tx.did(&rec.wallet_id, &rec.issuer_did)?;
    let key = tx.key(&rec.wallet_id, &issuer.signing_key_id)?;
    let id = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let issued_at = crate::now_secs();
    let validity_secs = match rec.credential_expires_at {
        None => rec.validity_period_secs,
        Some(at) => at
            .checked_sub(issued_at)
            .filter(|v| *v > 0)
            .ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "record {}: the credential would expire ({at}) before it is issued",
                    rec.id
                ))
            })?,
    };
    let slot = status::allocate(tx, &rec.wallet_id, &rec.issuer_did, status::CAPACITY)?;
    let entry = status::entry(&core.endpoint, &slot);
    let jwt = vc::issue(
        &core.keys,
        &issuer,
        &key,
        &vc::CredentialSpec {
            id: &id,
            types: &rec.types,
            contexts: &rec.contexts,
            subject,
            claims: &rec.claims,
            schema_id: rec.schema_id.as_deref(),
            issued_at,
            validity_secs,
            status: Some(&entry),
        },
    )
    .map_err(|e| Error::Crypto(e.to_string()))?;
    Ok(Signed {
        id,
        jwt,
        status: slot,
    })
}

/// RequestReceived → CredentialPending → CredentialGenerated, signing in
/// between; the credential goes out with the commit.
pub(super) fn issue_in(io: &mut Io, cur: CredentialRecord) -> Result<CredentialRecord> {
    let signed = sign_credential(io.core, io.tx, &cur)?;
    let mut rec = cur.clone();
    io.advance(Some(&cur), &mut rec, Event::Issue, &Inputs::default())?;
    let pending = rec.clone();
    rec.credential_id = Some(signed.id.clone());
    rec.issued_at_ms = Some(crate::now_ms());
    rec.status = Some(signed.status);
    let inputs = Inputs {
        credential_jwt: Some(signed.jwt.clone()),
        ..Default::default()
    };
    io.advance(Some(&pending), &mut rec, Event::CredentialSigned, &inputs)?;
    Ok(rec)
}

/// The record, if it is a `role` record in `state`; else why not.
pub(super) fn require(
    core: &Core,
    wallet: &str,
    record_id: &str,
    role: Role,
    state: RecordState,
    verb: &str,
) -> Result<CredentialRecord> {
    let seen = core.store.record(wallet, record_id)?;
    if seen.role != role || seen.state != state {
        return Err(Error::FailedPrecondition(format!(
            "record {record_id} is an {:?} record in {:?}; only an {role:?} record in {state:?} can be {verb}",
            seen.role, seen.state
        )));
    }
    Ok(seen)
}
