//! Making offers, one ([`Issuance::create_offer`]) or up to 1,000 at once
//! ([`Issuance::create_offers`]). Each is checked — claims, template,
//! connection, issuer DID — before anything is stored; the good ones of a
//! batch are stored 100 to a transaction, and each item has its own outcome.

use super::actions::require_active;
use super::machine::Event;
use super::{Inputs, Io, Issuance, OfferSpec, messages, new_record, parse_claims, user_did_key};
use crate::error::{Error, Result};
use crate::store::{CredentialRecord, DidMethod, RecordState, Role};
use crate::{templates, wallet};

/// An offer checked and ready to store, with its duplicate guard: every
/// offer marks its kind and claims on its connection as its own (the newest
/// wins); one that asks is refused while the marked one is live.
#[derive(Clone)]
pub(super) struct Prepared {
    pub fresh: CredentialRecord,
    pub guard: String,
    refuse_duplicate: bool,
    draft: bool,
}

/// What makes two offers on a connection the same credential: the template
/// (or the types, when there is none) and the claims.
fn guard(rec: &CredentialRecord) -> String {
    use sha2::Digest;
    let mut types = rec.types.clone();
    types.sort();
    let kind = serde_json::json!([rec.connection_id, rec.template_id, types, rec.claims]);
    let digest = sha2::Sha256::digest(kind.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// An offer in flight, or a credential issued and not revoked.
fn is_live(rec: &CredentialRecord) -> bool {
    !rec.state.is_final() || (rec.state == RecordState::CredentialSent && rec.revocation.is_none())
}

/// Offers stored in one transaction by [`Issuance::create_offers`].
const CHUNK: usize = 100;

/// Stores one prepared offer through `io`: the record an idempotency key
/// already made, a refusal when a live duplicate exists and it asked, or
/// the new record (OfferPending, or Draft) with its guard.
fn store_one(io: &mut Io, p: &Prepared) -> Result<CredentialRecord> {
    let wallet = &p.fresh.wallet_id;
    if let Some(k) = &p.fresh.idempotency_key
        && let Some(existing) = io.tx.record_by_idempotency(wallet, k)?
    {
        return Ok(existing);
    }
    if p.refuse_duplicate
        && let Some(live) = io.tx.guarded_by(wallet, &p.guard)?.filter(is_live)
    {
        return Err(Error::AlreadyExists(match &live.credential_id {
            Some(c) => format!(
                "connection {} already has credential {c} (record {}) with these claims",
                live.connection_id, live.id
            ),
            _ => format!(
                "connection {} already has an offer with these claims (record {}, {:?})",
                live.connection_id, live.id, live.state
            ),
        }));
    }
    let event = if p.draft {
        Event::DraftCreated
    } else {
        Event::OfferCreated
    };
    let mut rec = p.fresh.clone();
    io.advance(None, &mut rec, event, &Inputs::default())?;
    io.tx.set_guard(wallet, &p.guard, &rec.id)?;
    Ok(rec)
}

/// Offers one `CreateOffers` call may carry.
pub const MAX_OFFERS: usize = 1000;

impl Issuance {
    /// Makes an offer on an active connection (OfferPending, then OfferSent
    /// once delivered). The same idempotency key returns the same record.
    pub async fn create_offer(&self, wallet: &str, spec: &OfferSpec) -> Result<CredentialRecord> {
        let prepared = self.prepare(wallet, spec)?;
        self.store_offer(prepared).await
    }

    /// Up to [`MAX_OFFERS`] offers, each checked on its own (one failing
    /// does not stop the others): one result per spec, in order.
    /// A spec without an idempotency key gets `<batch_key>:<index>` when
    /// `batch_key` is given, so retrying the whole batch makes nothing twice.
    pub async fn create_offers(
        &self,
        wallet: &str,
        specs: Vec<OfferSpec>,
        batch_key: Option<&str>,
    ) -> Result<Vec<Result<CredentialRecord>>> {
        if specs.len() > MAX_OFFERS {
            return Err(Error::InvalidArgument(format!(
                "{} offers, over {MAX_OFFERS}",
                specs.len()
            )));
        }
        if let Some(key) = batch_key
            && key.len() > 200
        {
            return Err(Error::InvalidArgument(
                "idempotency_key is over 200 bytes".into(),
            ));
        }
        let mut results: Vec<Option<Result<CredentialRecord>>> = Vec::new();
        results.resize_with(specs.len(), || None);
        let mut ready = Vec::new();
        let mut positions = Vec::new();
        for (i, mut spec) in specs.into_iter().enumerate() {
            if spec.idempotency_key.as_deref().is_none_or(str::is_empty)
                && let Some(key) = batch_key
            {
                spec.idempotency_key = Some(format!("{key}:{i}"));
            }
            match self.prepare(wallet, &spec) {
                Err(e) => results[i] = Some(Err(e)),
                Ok(prepared) => {
                    ready.push(prepared);
                    positions.push(i);
                }
            }
        }
        for (i, stored) in positions.into_iter().zip(self.store_offers(ready).await) {
            results[i] = Some(stored);
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every offer has an outcome"))
            .collect())
    }

    /// The record an offer makes, checked, and its duplicate guard; nothing is stored but, on a wallet's first offer, its
    /// issuer DID.
    pub(super) fn prepare(&self, wallet: &str, spec: &OfferSpec) -> Result<Prepared> {
        let conn = self.core.store.connection(wallet, &spec.connection_id)?;
        require_active(&conn)?;
        self.prepare_on(wallet, spec, &conn)
    }

    /// As [`Self::prepare`], on `conn` as given (a claim link's, whose peer
    /// is not known yet).
    pub(super) fn prepare_on(
        &self,
        wallet: &str,
        spec: &OfferSpec,
        conn: &crate::store::Connection,
    ) -> Result<Prepared> {
        let core = &self.core;
        let claims = parse_claims(&spec.claims_json)?;
        super::inbound::check_claims_size(&claims, core.config.issuance.max_claims_bytes)?;
        if spec.types.iter().any(|t| t.trim().is_empty()) {
            return Err(Error::InvalidArgument(
                "credential types must not be empty".into(),
            ));
        }
        for (name, value) in [
            ("correlation_id", &spec.correlation_id),
            ("reference_id", &spec.reference_id),
            ("collection_id", &spec.collection_id),
            ("idempotency_key", &spec.idempotency_key),
        ] {
            if value.as_deref().is_some_and(|v| v.len() > 256) {
                return Err(Error::InvalidArgument(format!("{name} is over 256 bytes")));
            }
        }
        // An absolute expiry is a validity counted from now (so a template's
        // maximum applies), and pins `exp` when the credential is signed.
        let expires_at = spec.credential_expires_at.filter(|e| *e > 0);
        let validity_period_secs = match expires_at {
            None => spec.validity_period_secs,
            Some(_) if spec.validity_period_secs > 0 => {
                return Err(Error::InvalidArgument(
                    "give validity_period_secs or credential_expires_at, not both".into(),
                ));
            }
            Some(at) => at
                .checked_sub(crate::now_secs())
                .filter(|v| *v > 0)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "credential_expires_at {at} is not in the future"
                    ))
                })?,
        };
        let asked = templates::Terms {
            types: spec.types.clone(),
            contexts: vec![],
            schema_id: spec.schema_id.clone().filter(|s| !s.is_empty()),
            validity_period_secs,
            issuer_did: spec.issuer_did.clone(),
        };
        let template_id = spec.template_id.clone().filter(|t| !t.is_empty());
        let terms = match &template_id {
            Some(id) => templates::apply(core, wallet, id, &claims, asked)?,
            None => asked,
        };
        let terms_contexts = terms.contexts.clone();
        let format = messages::spoken(spec.format.as_deref().unwrap_or(messages::FORMAT))?;
        let issuer_did = match terms.issuer_did.as_deref().filter(|d| !d.is_empty()) {
            Some(d) => user_did_key(core, wallet, d, "issuer_did")?.did,
            None => self.default_issuer(wallet)?,
        };
        let now = crate::now_ms();
        let terms = messages::OfferTerms {
            claims,
            types: terms.types,
            schema_id: terms.schema_id,
            validity_period_secs: terms.validity_period_secs,
            issuer_did,
            // 122 random bits from the OS RNG, as hex.
            challenge: uuid::Uuid::new_v4().simple().to_string(),
            // Our offers name the issuer DID as the proof's audience.
            domain: String::new(),
            format: format.into(),
            comment: spec.comment.clone().filter(|c| !c.is_empty()),
        };
        // A draft's offer expires counting from when it is sent.
        let expires = (spec.expires_in_secs > 0 && !spec.draft)
            .then(|| now.saturating_add(crate::secs_to_ms(spec.expires_in_secs)));
        let mut fresh = new_record(
            core,
            Role::Issuer,
            conn,
            uuid::Uuid::new_v4().to_string(),
            terms,
            expires,
        );
        fresh.automatic_issuance = spec.automatic_issuance;
        fresh.idempotency_key = spec.idempotency_key.clone().filter(|k| !k.is_empty());
        fresh.template_id = template_id;
        fresh.contexts = terms_contexts;
        fresh.correlation_id = spec.correlation_id.clone().filter(|k| !k.is_empty());
        fresh.reference_id = spec.reference_id.clone().filter(|k| !k.is_empty());
        fresh.collection_id = spec.collection_id.clone().filter(|k| !k.is_empty());
        fresh.credential_expires_at = expires_at;
        if spec.draft {
            fresh.draft_expires_in_secs = spec.expires_in_secs;
        }
        Ok(Prepared {
            guard: guard(&fresh),
            refuse_duplicate: spec.refuse_duplicate,
            draft: spec.draft,
            fresh,
        })
    }

    /// Stores a prepared offer and queues it (one action, batched with
    /// concurrent ones).
    async fn store_offer(&self, prepared: Prepared) -> Result<CredentialRecord> {
        self.act_on(move |io| store_one(io, &prepared)).await
    }

    /// Stores prepared offers, [`CHUNK`] to a transaction; an item refused
    /// there (a duplicate) fails alone. A chunk that fails otherwise is
    /// stored again item by item, so only what failed fails.
    async fn store_offers(&self, prepared: Vec<Prepared>) -> Vec<Result<CredentialRecord>> {
        let core = &self.core;
        let by = crate::actor::current();
        let mut results = Vec::with_capacity(prepared.len());
        for chunk in prepared.chunks(CHUNK) {
            let stored = crate::after::After::transact(core, |tx, after| {
                let mut io = Io {
                    core,
                    tx,
                    after,
                    by: by.clone(),
                };
                chunk
                    .iter()
                    .map(|p| match store_one(&mut io, p) {
                        // Refused before anything of it was written.
                        Err(e @ Error::AlreadyExists(_)) => Ok(Err(e)),
                        other => other.map(Ok),
                    })
                    .collect::<Result<Vec<_>>>()
            });
            match stored {
                Ok((outcomes, after)) => match core.store.durable().await {
                    Ok(flushed) => {
                        after.publish_flushed(&flushed, core);
                        results.extend(outcomes);
                    }
                    Err(e) => {
                        after.publish_detached(core);
                        results.extend(chunk.iter().map(|_| Err(Error::Storage(e.to_string()))));
                    }
                },
                Err(_) => {
                    for p in chunk {
                        results.push(self.store_offer(p.clone()).await);
                    }
                }
            }
        }
        results
    }

    /// The wallet's issuer DID, made (and stored, in its own transaction)
    /// on first use; of two made at once, the first stored wins.
    fn default_issuer(&self, wallet: &str) -> Result<String> {
        let core = &self.core;
        let name = format!("issuer_did/{wallet}");
        if let Some(did) = core.store.meta(&name)? {
            return Ok(String::from_utf8_lossy(&did).into_owned());
        }
        let new = wallet::new_did(&core.keys, &core.endpoint, wallet, DidMethod::Key, "issuer");
        core.store.transact(|tx| {
            if let Some(did) = tx.meta(&name)? {
                return Ok(String::from_utf8_lossy(&did).into_owned());
            }
            wallet::put_did(tx, &new)?;
            tx.set_meta(&name, new.record.did.as_bytes())?;
            Ok(new.record.did.clone())
        })
    }
}
