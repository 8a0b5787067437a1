//! Issue Credential 3.0, issuer and holder roles. [`machine`] decides; the
//! files around it read and write: every transition commits with its
//! record, indices, outbox messages and event in one transaction, and
//! control-plane actions compare-and-swap on the record version.
//!
//! Which file answers which question:
//! - `machine.rs`: which transitions are legal, and what each one sends.
//! - `messages.rs`: what the messages look like on the wire.
//! - this file: how a transition is carried out (`Io::advance`) and how
//!   control-plane actions share transactions ([`Issuance`]).
//! - `actions.rs`: what the issuer and the holder can ask for (offer,
//!   issue, accept, reject).
//! - `inbound.rs`: what a peer's message does (offer, request, credential,
//!   ack, problem report).
//! - `delivery.rs`: what the outbox's report on a tracked message does.
//! - `sweep.rs`: when an idle or expired thread is abandoned.
//! - `custodial.rs`: issuing between two wallets of this daemon in one call.
//! - `revoke.rs`: revoking issued credentials (status bit, notification).

mod actions;
mod claim_link;
mod custodial;
mod delivery;
mod drafts;
mod inbound;
pub mod machine;
mod messages;
mod offers;
mod revoke;
mod sweep;

use std::sync::Arc;

use serde_json::{Map, Value};

pub use claim_link::link_of;
pub use custodial::Custodial;
pub use delivery::{delivered, delivery_failed};
pub use drafts::DraftEdit;
pub use inbound::{handle, on_problem};
pub use messages::{ACK, ISSUE, NOTIFICATION_ACK, OFFER, PROPOSE, REQUEST};
pub use offers::MAX_OFFERS;
pub use revoke::{MAX_BULK, Revoked};
pub use sweep::abandon_connection;

use super::{problem_report, revocation_notification};
use crate::Core;
use crate::after::After;
use crate::didcomm::outbox;
use crate::error::{Error, Result};
use crate::store::{
    Connection, CredentialRecord, DidMethod, DidRecord, GroupCommit, RecordEvent, RecordState,
    Role, StoreTx, StoredCredential,
};
use machine::{Effect, Event};

/// The issue-credential protocol's state: the core and the batcher that
/// lets control-plane actions called together share one transaction.
/// Cheap to clone; the actions are its methods (see `actions.rs`).
#[derive(Clone)]
pub struct Issuance {
    core: Core,
    actions: Arc<Actions>,
}

impl Issuance {
    pub fn new(core: &Core) -> Self {
        Issuance {
            core: core.clone(),
            actions: Default::default(),
        }
    }
}

/// What an issuer offers.
#[derive(Debug, Clone, Default)]
pub struct OfferSpec {
    pub connection_id: String,
    /// A JSON object: the credential subject's claims.
    pub claims_json: String,
    pub types: Vec<String>,
    pub schema_id: Option<String>,
    /// Seconds from issuance to `exp`; 0 for no expiry.
    pub validity_period_secs: u64,
    pub automatic_issuance: bool,
    pub idempotency_key: Option<String>,
    /// A did:key of the wallet; empty: the wallet's issuer DID (made once).
    pub issuer_did: Option<String>,
    /// The offer's `expires_time`, from now; 0 for none.
    pub expires_in_secs: u64,
    pub comment: Option<String>,
    /// The attachment format (`prism/jwt`, `jwt_vc_json`, `vc+jwt`); None:
    /// `prism/jwt`.
    pub format: Option<String>,
    /// A template of the wallet: its types, schema, validity bounds and
    /// issuer DID apply, and the claims must meet its schema.
    pub template_id: Option<String>,
    /// The caller's own ids for the offer, stored and listed with it.
    pub correlation_id: Option<String>,
    pub reference_id: Option<String>,
    pub collection_id: Option<String>,
    /// Refuse (ALREADY_EXISTS) when the connection already has a live
    /// credential or offer of the same template (or types) and claims.
    pub refuse_duplicate: bool,
    /// Keep it as a draft (not sent; see `drafts.rs`).
    pub draft: bool,
    /// The credential's `exp`, Unix seconds (instead of a validity period).
    pub credential_expires_at: Option<u64>,
}

/// What a transition's effects need that is computed before the transaction.
#[derive(Default)]
struct Inputs {
    proof_jwt: Option<String>,
    credential_jwt: Option<String>,
    credential: Option<StoredCredential>,
    problem_code: &'static str,
    /// Why a record fails or is abandoned.
    reason: Option<String>,
}

impl Inputs {
    fn because(reason: String) -> Self {
        Inputs {
            reason: Some(reason),
            ..Default::default()
        }
    }
}

fn parse_claims(json: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(Error::InvalidArgument(
            "claims must be a JSON object".into(),
        )),
        Err(e) => Err(Error::InvalidArgument(format!("claims are not JSON: {e}"))),
    }
}

/// A transaction in progress: the core, its writes, and what runs once it
/// has committed.
struct Io<'a, 't> {
    core: &'a Core,
    tx: &'a StoreTx<'t>,
    after: &'a mut After,
    /// Who makes the change, recorded as the record's `updated_by` (and
    /// `created_by` when new): a control-plane token's id, [`BY_PEER`],
    /// [`BY_AGENT`], or "" (outbox bookkeeping; no tokens), which leaves
    /// `updated_by` as it was.
    by: String,
}

/// `updated_by` of a change a peer's message made.
pub const BY_PEER: &str = "peer";
/// `updated_by` of a change agentd decided by itself (sweeping).
pub const BY_AGENT: &str = "agentd";

impl Io<'_, '_> {
    /// Applies `event` to `rec` (whose stored form is `old`, None if new)
    /// and carries out its effects, all inside the transaction.
    fn advance(
        &mut self,
        old: Option<&CredentialRecord>,
        rec: &mut CredentialRecord,
        event: Event,
        inputs: &Inputs,
    ) -> Result<()> {
        let Io {
            core,
            tx,
            after,
            by,
        } = self;
        if old.is_none() {
            rec.created_by = by.clone();
        }
        if !by.is_empty() {
            rec.updated_by = by.clone();
        }
        let reason = inputs.reason.clone();
        let prev = old.map(|o| o.state);
        let (next, effects) = machine::transition(rec.role, prev, &event)
            .map_err(|e| Error::FailedPrecondition(format!("record {}: {e}", rec.id)))?;
        // Inside the inbound span when a peer's message caused it; the
        // record write and the messages it queues are part of it.
        let span = tracing::info_span!("transition", wallet = %rec.wallet_id, record = %rec.id,
            thid = %rec.thid, role = rec.role.name(), from = prev.map(RecordState::name),
            to = next.name());
        let _enter = span.enter();
        let now = crate::now_ms();
        rec.state = next;
        rec.version = old.map_or(0, |o| o.version) + 1;
        rec.updated_at_ms = now;
        if reason.is_some() {
            rec.problem = reason.clone();
        }
        if effects.iter().any(|e| e.is_tracked()) {
            rec.meta_retries = outbox::retry_allowance(&core.config.outbox);
            rec.meta_next_retry_ms = None;
        }
        // A draft waits for its issuer, however long.
        rec.deadline_ms = (!next.is_final() && next != RecordState::Draft).then(|| {
            let idle = rec
                .updated_at_ms
                .saturating_add(crate::secs_to_ms(core.config.issuance.thread_timeout_secs));
            rec.expires_at_ms.map_or(idle, |e| e.min(idle))
        });
        tx.put_record(old, rec)?;
        let event = tx.push_event(RecordEvent {
            seq: 0,
            wallet_id: rec.wallet_id.clone(),
            record_id: rec.id.clone(),
            thid: rec.thid.clone(),
            role: rec.role,
            old_state: prev,
            new_state: next,
            reason,
            at_ms: now,
            ack_received: rec.ack_received,
        })?;
        after.event(event);
        for effect in effects {
            perform(tx, after, rec, *effect, inputs)?;
        }
        Ok(())
    }
}

fn perform(
    tx: &StoreTx,
    after: &mut After,
    rec: &CredentialRecord,
    effect: Effect,
    inputs: &Inputs,
) -> Result<()> {
    let missing = |what: &str| Error::Internal(format!("{effect:?} without {what}"));
    let msg = match effect {
        Effect::SendOffer => messages::offer(rec),
        Effect::SendRequest => {
            let jwt = inputs
                .proof_jwt
                .as_deref()
                .ok_or_else(|| missing("a proof"))?;
            messages::request(rec, jwt)
        }
        Effect::SendCredential => {
            let jwt = inputs
                .credential_jwt
                .as_deref()
                .ok_or_else(|| missing("a credential"))?;
            messages::issue(rec, jwt)
        }
        // An ack only when the credential asked for one (please_ack).
        Effect::SendAck if !rec.ack_requested => return Ok(()),
        Effect::SendAck => messages::ack(rec),
        Effect::SendProblemReport => {
            let comment = rec.problem.as_deref().unwrap_or("refused");
            let code = if inputs.problem_code.is_empty() {
                "e.p.msg"
            } else {
                inputs.problem_code
            };
            problem_report::in_thread(&rec.thid, code, comment)
        }
        Effect::StoreCredential => {
            let c = inputs
                .credential
                .as_ref()
                .ok_or_else(|| missing("a credential"))?;
            return tx.put_credential(c);
        }
    };
    let record = effect.is_tracked().then_some(rec.id.as_str());
    outbox::enqueue_for(
        tx,
        after,
        record,
        &rec.wallet_id,
        &rec.our_did,
        &rec.their_did,
        &msg,
    )?;
    Ok(())
}

/// Runs `f` in a transaction and publishes its effects once it is durable.
async fn commit<R>(core: &Core, f: impl Fn(&mut Io) -> Result<R>) -> Result<R> {
    let (r, after) = After::transact(core, |tx, after| {
        f(&mut Io {
            core,
            tx,
            after,
            by: BY_AGENT.into(),
        })
    })?;
    after.publish(core).await?;
    Ok(r)
}

/// A control-plane action on one record, run inside a transaction.
type Action = Box<dyn Fn(&mut Io) -> Result<CredentialRecord> + Send + Sync>;

/// Control-plane actions arriving together share one transaction.
type Actions = GroupCommit<Action, (CredentialRecord, After)>;

impl Issuance {
    /// As [`commit`], for a control-plane action: actions called at the
    /// same time commit together, each with its own result and events.
    async fn act_on(
        &self,
        f: impl Fn(&mut Io) -> Result<CredentialRecord> + Send + Sync + 'static,
    ) -> Result<CredentialRecord> {
        let core = &self.core;
        // The token behind the request; "" without tokens (grpc.auth = "none").
        let by = crate::actor::current();
        let (rec, after) = self
            .actions
            .run(
                Box::new(move |io: &mut Io| {
                    io.by.clone_from(&by);
                    f(io)
                }),
                |batch| run_actions(core, batch),
                |(_, after)| after.publish_detached(core),
            )
            .await?;
        crate::crashpoint!("action.after_commit");
        let flushed = core.store.durable().await?;
        crate::crashpoint!("action.after_flush");
        after.publish_flushed(&flushed, core);
        Ok(rec)
    }
}

/// All of `batch` in one transaction; if any is refused (a lost race, a
/// record no longer in its state), each in its own, so only it fails.
fn run_actions(core: &Core, batch: &[Action]) -> Vec<Result<(CredentialRecord, After)>> {
    core.store.transact_each(batch, |tx, f| {
        After::gather(|after| {
            f(&mut Io {
                core,
                tx,
                after,
                by: String::new(),
            })
        })
    })
}

/// Reads the record as it is inside the transaction and refuses if it
/// changed since the caller read it (compare-and-swap on the version).
fn current(tx: &StoreTx, seen: &CredentialRecord) -> Result<CredentialRecord> {
    let cur = tx.record(&seen.wallet_id, &seen.id)?;
    if cur.version != seen.version {
        return Err(Error::FailedPrecondition(format!(
            "record {} changed concurrently (version {} is now {}, state {:?})",
            seen.id, seen.version, cur.version, cur.state
        )));
    }
    Ok(cur)
}

fn user_did_key(core: &Core, wallet: &str, did: &str, what: &str) -> Result<DidRecord> {
    let rec = core.store.did(wallet, did).map_err(|_| {
        Error::InvalidArgument(format!("{what} {did} is not a DID of wallet {wallet}"))
    })?;
    if rec.method != DidMethod::Key {
        return Err(Error::InvalidArgument(format!(
            "{what} {did} must be a did:key"
        )));
    }
    Ok(rec)
}

/// A record of `role` on `conn` for thread `thid`, before its first transition.
fn new_record(
    core: &Core,
    role: Role,
    conn: &Connection,
    thid: String,
    terms: messages::OfferTerms,
    expires_at_ms: Option<i64>,
) -> CredentialRecord {
    let now = crate::now_ms();
    CredentialRecord {
        id: uuid::Uuid::new_v4().to_string(),
        wallet_id: conn.wallet_id.clone(),
        role,
        state: RecordState::OfferPending,
        version: 0,
        thid,
        connection_id: conn.id.clone(),
        our_did: conn.our_did.clone(),
        their_did: conn.their_did.clone().unwrap_or_default(),
        claims: terms.claims,
        types: terms.types,
        schema_id: terms.schema_id,
        validity_period_secs: terms.validity_period_secs,
        automatic_issuance: false,
        idempotency_key: None,
        issuer_did: terms.issuer_did,
        subject_did: None,
        challenge: terms.challenge,
        credential_id: None,
        ack_received: false,
        ack_requested: core.config.issuance.please_ack,
        domain: terms.domain,
        format: terms.format,
        problem: None,
        comment: terms.comment,
        expires_at_ms,
        deadline_ms: None,
        meta_retries: outbox::retry_allowance(&core.config.outbox),
        meta_next_retry_ms: None,
        meta_last_failure: None,
        created_at_ms: now,
        updated_at_ms: now,
        created_by: String::new(),
        updated_by: String::new(),
        status: None,
        revocation: None,
        issued_at_ms: None,
        template_id: None,
        contexts: vec![],
        draft_expires_in_secs: 0,
        credential_expires_at: None,
        claim_link: None,
        correlation_id: None,
        reference_id: None,
        collection_id: None,
        data_deleted_at_ms: None,
    }
}

#[cfg(test)]
mod tests;
