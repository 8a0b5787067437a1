//! What the issuer and the holder ask for over the control plane: offer,
//! issue; accept, reject; delete a held credential. Each is one action on
//! one record, compare-and-swap on the version the caller saw, batched
//! with concurrent actions into one transaction ([`Issuance::act_on`]).

use super::machine::Event;
use super::{
    Inputs, Io, Issuance, OfferSpec, current, messages, new_record, parse_claims, user_did_key,
};
use crate::error::{Error, Result};
use crate::store::{
    Connection, ConnectionState, CredentialRecord, DidMethod, RecordState, Role, StatusSlot,
    StoreTx,
};
use crate::{Core, status, templates, vc, wallet};

impl Issuance {
    /// Makes an offer on an active connection (OfferPending, then OfferSent
    /// once delivered). The same idempotency key returns the same record.
    pub async fn create_offer(&self, wallet: &str, spec: &OfferSpec) -> Result<CredentialRecord> {
        let core = &self.core;
        let claims = parse_claims(&spec.claims_json)?;
        super::inbound::check_claims_size(&claims, core.config.issuance.max_claims_bytes)?;
        if spec.types.iter().any(|t| t.trim().is_empty()) {
            return Err(Error::InvalidArgument(
                "credential types must not be empty".into(),
            ));
        }
        let conn = core.store.connection(wallet, &spec.connection_id)?;
        require_active(&conn)?;
        let asked = templates::Terms {
            types: spec.types.clone(),
            schema_id: spec.schema_id.clone().filter(|s| !s.is_empty()),
            validity_period_secs: spec.validity_period_secs,
            issuer_did: spec.issuer_did.clone(),
        };
        let template_id = spec.template_id.clone().filter(|t| !t.is_empty());
        let terms = match &template_id {
            Some(id) => templates::apply(core, wallet, id, &claims, asked)?,
            None => asked,
        };
        for (name, value) in [
            ("correlation_id", &spec.correlation_id),
            ("reference_id", &spec.reference_id),
        ] {
            if value.as_deref().is_some_and(|v| v.len() > 256) {
                return Err(Error::InvalidArgument(format!("{name} is over 256 bytes")));
            }
        }
        let issuer_candidate = match terms.issuer_did.as_deref().filter(|d| !d.is_empty()) {
            Some(d) => IssuerDid::Given(user_did_key(core, wallet, d, "issuer_did")?.did),
            None => match core.store.meta(&IssuerDid::meta_name(wallet))? {
                Some(did) => IssuerDid::Given(String::from_utf8_lossy(&did).into_owned()),
                None => IssuerDid::Default(wallet::new_did(
                    &core.keys,
                    &core.endpoint,
                    wallet,
                    DidMethod::Key,
                    "issuer",
                )),
            },
        };
        let now = crate::now_ms();
        let terms = messages::OfferTerms {
            claims,
            types: terms.types,
            schema_id: terms.schema_id,
            validity_period_secs: terms.validity_period_secs,
            // Filled in the transaction, where the default one may be made.
            issuer_did: String::new(),
            // 122 random bits from the OS RNG, as hex.
            challenge: uuid::Uuid::new_v4().simple().to_string(),
            // Our offers name the issuer DID as the proof's audience.
            domain: String::new(),
            format: messages::spoken(spec.format.as_deref().unwrap_or(messages::FORMAT))?.into(),
            comment: spec.comment.clone().filter(|c| !c.is_empty()),
        };
        let expires = (spec.expires_in_secs > 0)
            .then(|| now.saturating_add(crate::secs_to_ms(spec.expires_in_secs)));
        let mut fresh = new_record(
            core,
            Role::Issuer,
            &conn,
            uuid::Uuid::new_v4().to_string(),
            terms,
            expires,
        );
        fresh.automatic_issuance = spec.automatic_issuance;
        fresh.idempotency_key = spec.idempotency_key.clone().filter(|k| !k.is_empty());
        fresh.template_id = template_id;
        fresh.correlation_id = spec.correlation_id.clone().filter(|k| !k.is_empty());
        fresh.reference_id = spec.reference_id.clone().filter(|k| !k.is_empty());
        let wallet = wallet.to_string();
        self.act_on(move |io| {
            if let Some(k) = &fresh.idempotency_key
                && let Some(existing) = io.tx.record_by_idempotency(&wallet, k)?
            {
                return Ok(existing);
            }
            let mut rec = fresh.clone();
            rec.issuer_did = issuer_candidate.resolve(io.tx, &wallet)?;
            io.advance(None, &mut rec, Event::OfferCreated, &Inputs::default())?;
            Ok(rec)
        })
        .await
    }

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
    async fn act(
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

    /// Deletes a stored credential.
    pub async fn delete_credential(&self, wallet: &str, id: &str) -> Result<()> {
        let core = &self.core;
        core.store
            .transact(|tx| tx.remove_credential(wallet, id).map(|_| ()))?;
        core.store.durable().await.map(|_| ())
    }
}

enum IssuerDid {
    Given(String),
    /// A new DID, stored as the wallet's issuer DID unless one was made meanwhile.
    Default(wallet::NewDid),
}

impl IssuerDid {
    fn meta_name(wallet: &str) -> String {
        format!("issuer_did/{wallet}")
    }

    /// The issuer DID; the wallet's default one is made on first use.
    fn resolve(&self, tx: &StoreTx, wallet: &str) -> Result<String> {
        match self {
            IssuerDid::Given(did) => Ok(did.clone()),
            IssuerDid::Default(new) => {
                let name = IssuerDid::meta_name(wallet);
                if let Some(did) = tx.meta(&name)? {
                    return Ok(String::from_utf8_lossy(&did).into_owned());
                }
                wallet::put_did(tx, new)?;
                tx.set_meta(&name, new.record.did.as_bytes())?;
                Ok(new.record.did.clone())
            }
        }
    }
}

fn require_active(conn: &Connection) -> Result<()> {
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
    let slot = status::allocate(tx, &rec.wallet_id, &rec.issuer_did, status::CAPACITY)?;
    let entry = status::entry(&core.endpoint, &slot);
    let jwt = vc::issue(
        &core.keys,
        &issuer,
        &key,
        &vc::CredentialSpec {
            id: &id,
            types: &rec.types,
            subject,
            claims: &rec.claims,
            schema_id: rec.schema_id.as_deref(),
            issued_at: crate::now_secs(),
            validity_secs: rec.validity_period_secs,
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
    rec.status = Some(signed.status);
    let inputs = Inputs {
        credential_jwt: Some(signed.jwt.clone()),
        ..Default::default()
    };
    io.advance(Some(&pending), &mut rec, Event::CredentialSigned, &inputs)?;
    Ok(rec)
}

/// The record, if it is a `role` record in `state`; else why not.
fn require(
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
