//! Issue Credential 3.0, issuer and holder roles. [`machine`] decides; this
//! module reads and writes around it: every transition commits with its
//! record, indices, outbox messages and event in one transaction, and
//! control-plane actions compare-and-swap on the record version.

pub mod machine;
mod messages;

use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

pub use messages::{ACK, ISSUE, OFFER, PROPOSE, REQUEST};

use super::{After, connections, problem_report};
use crate::didcomm::{Message, outbox};
use crate::error::{Error, Result};
use crate::store::{
    Connection, ConnectionState, CredentialRecord, DidMethod, DidRecord, GroupCommit, RecordEvent,
    RecordState, Role, StoreTx, StoredCredential,
};
use crate::{Core, vc, wallet};
use machine::{Effect, Event};

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
pub(crate) struct Io<'a, 't> {
    core: &'a Core,
    tx: &'a StoreTx<'t>,
    after: &'a mut After,
}

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
        let Io { core, tx, after } = self;
        let reason = inputs.reason.clone();
        let prev = old.map(|o| o.state);
        let (next, effects) = machine::transition(rec.role, prev, &event)
            .map_err(|e| Error::FailedPrecondition(format!("record {}: {e}", rec.id)))?;
        let now = crate::now_ms();
        rec.state = next;
        rec.version = old.map_or(0, |o| o.version) + 1;
        rec.updated_at_ms = now;
        if reason.is_some() {
            rec.problem = reason.clone();
        }
        if effects.iter().any(|e| e.is_tracked()) {
            rec.meta_retries = core.config.outbox.max_retries;
            rec.meta_next_retry_ms = None;
        }
        rec.deadline_ms = (!next.is_final()).then(|| {
            let idle = rec.updated_at_ms + core.config.issuance.thread_timeout_secs as i64 * 1000;
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
        record,
        &rec.wallet_id,
        &rec.our_did,
        &rec.their_did,
        &msg,
    )?;
    after.sent();
    Ok(())
}

/// Runs `f` in a transaction, makes it durable, then publishes its events
/// and wakes the workers it needs.
async fn commit<R>(core: &Core, f: impl Fn(&mut Io) -> Result<R>) -> Result<R> {
    let (r, after) = After::transact(core, |tx, after| f(&mut Io { core, tx, after }))?;
    core.store.durable().await?;
    after.run(core);
    Ok(r)
}

/// A control-plane action on one record, run inside a transaction.
pub(crate) type Action = Box<dyn Fn(&mut Io) -> Result<CredentialRecord> + Send + Sync>;

/// Control-plane actions arriving together share one transaction.
pub(crate) type Actions = GroupCommit<Action, (CredentialRecord, After)>;

/// As [`commit`], for a control-plane action: actions called at the same
/// time commit together, each with its own result and events.
async fn act_on(
    core: &Core,
    f: impl Fn(&mut Io) -> Result<CredentialRecord> + Send + Sync + 'static,
) -> Result<CredentialRecord> {
    let (rec, after) = core
        .actions
        .run(
            Box::new(f),
            |batch| run_actions(core, batch),
            |(_, after)| after.run_when_durable(core),
        )
        .await?;
    core.store.durable().await?;
    after.run(core);
    Ok(rec)
}

/// All of `batch` in one transaction; if any is refused (a lost race, a
/// record no longer in its state), each in its own, so only it fails.
fn run_actions(core: &Core, batch: &[Action]) -> Vec<Result<(CredentialRecord, After)>> {
    core.store.transact_each(batch, |tx, f| {
        After::gather(|after| f(&mut Io { core, tx, after }))
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

// ---- issuer actions

/// Makes an offer on an active connection (OfferPending, then OfferSent
/// once delivered). The same idempotency key returns the same record.
pub async fn create_offer(core: &Core, wallet: &str, spec: &OfferSpec) -> Result<CredentialRecord> {
    let claims = parse_claims(&spec.claims_json)?;
    if spec.types.iter().any(|t| t.trim().is_empty()) {
        return Err(Error::InvalidArgument(
            "credential types must not be empty".into(),
        ));
    }
    let conn = core.store.connection(wallet, &spec.connection_id)?;
    require_active(&conn)?;
    let issuer_candidate = match spec.issuer_did.as_deref().filter(|d| !d.is_empty()) {
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
        types: spec.types.clone(),
        schema_id: spec.schema_id.clone().filter(|s| !s.is_empty()),
        validity_period_secs: spec.validity_period_secs,
        // Filled in the transaction, where the default one may be made.
        issuer_did: String::new(),
        // 122 random bits from the OS RNG, as hex.
        challenge: uuid::Uuid::new_v4().simple().to_string(),
        comment: spec.comment.clone().filter(|c| !c.is_empty()),
    };
    let expires = (spec.expires_in_secs > 0).then(|| now + spec.expires_in_secs as i64 * 1000);
    let mut template = new_record(
        core,
        Role::Issuer,
        &conn,
        uuid::Uuid::new_v4().to_string(),
        terms,
        expires,
    );
    template.automatic_issuance = spec.automatic_issuance;
    template.idempotency_key = spec.idempotency_key.clone().filter(|k| !k.is_empty());
    let wallet = wallet.to_string();
    act_on(core, move |io| {
        if let Some(k) = &template.idempotency_key
            && let Some(existing) = io.tx.record_by_idempotency(&wallet, k)?
        {
            return Ok(existing);
        }
        let mut rec = template.clone();
        rec.issuer_did = issuer_candidate.resolve(io.tx, &wallet)?;
        io.advance(None, &mut rec, Event::OfferCreated, &Inputs::default())?;
        Ok(rec)
    })
    .await
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
        problem: None,
        comment: terms.comment,
        expires_at_ms,
        deadline_ms: None,
        meta_retries: core.config.outbox.max_retries,
        meta_next_retry_ms: None,
        meta_last_failure: None,
        created_at_ms: now,
        updated_at_ms: now,
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

/// Signs the credential for a record in RequestReceived and sends it
/// (CredentialPending → CredentialGenerated → CredentialSent on delivery).
pub async fn issue(core: &Core, wallet: &str, record_id: &str) -> Result<CredentialRecord> {
    let seen = require(
        core,
        wallet,
        record_id,
        Role::Issuer,
        RecordState::RequestReceived,
        "issued",
    )?;
    act_on(core, move |io| {
        let cur = current(io.tx, &seen)?;
        issue_in(io, cur)
    })
    .await
}

struct Signed {
    id: String,
    jwt: String,
}

/// Signs the record's credential, reading the issuer key through `tx`.
fn sign_credential(core: &Core, tx: &StoreTx, rec: &CredentialRecord) -> Result<Signed> {
    let subject = rec.subject_did.as_deref().ok_or_else(|| {
        Error::FailedPrecondition(format!("record {} has no subject DID", rec.id))
    })?;
    let issuer = tx.did(&rec.wallet_id, &rec.issuer_did)?;
    let key = tx.key(&rec.wallet_id, &issuer.signing_key_id)?;
    let id = format!("urn:uuid:{}", uuid::Uuid::new_v4());
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
        },
    )
    .map_err(|e| Error::Crypto(e.to_string()))?;
    Ok(Signed { id, jwt })
}

/// RequestReceived → CredentialPending → CredentialGenerated, signing in
/// between; the credential goes out with the commit.
fn issue_in(io: &mut Io, cur: CredentialRecord) -> Result<CredentialRecord> {
    let signed = sign_credential(io.core, io.tx, &cur)?;
    let mut rec = cur.clone();
    io.advance(Some(&cur), &mut rec, Event::Issue, &Inputs::default())?;
    let pending = rec.clone();
    rec.credential_id = Some(signed.id.clone());
    let inputs = Inputs {
        credential_jwt: Some(signed.jwt.clone()),
        ..Default::default()
    };
    io.advance(Some(&pending), &mut rec, Event::CredentialSigned, &inputs)?;
    Ok(rec)
}

// ---- holder actions

/// Accepts an offer: the request proves control of the subject DID (the
/// one given, or a fresh did:key).
pub async fn accept_offer(
    core: &Core,
    wallet: &str,
    record_id: &str,
    subject_did: Option<&str>,
) -> Result<CredentialRecord> {
    let seen = require(
        core,
        wallet,
        record_id,
        Role::Holder,
        RecordState::OfferReceived,
        "accepted",
    )?;
    if seen.expires_at_ms.is_some_and(|e| e <= crate::now_ms()) {
        abandon(
            core,
            &seen,
            "the offer expired before it was accepted".into(),
        )
        .await?;
        return Err(Error::FailedPrecondition(format!(
            "the offer of record {record_id} has expired"
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
    act(core, &seen, Event::Accept, inputs, move |tx, rec| {
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
    core: &Core,
    wallet: &str,
    record_id: &str,
    reason: &str,
) -> Result<CredentialRecord> {
    let seen = require(
        core,
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
    act(core, &seen, Event::Fail, inputs, |_, _| Ok(())).await
}

async fn abandon(core: &Core, seen: &CredentialRecord, reason: String) -> Result<CredentialRecord> {
    act(
        core,
        seen,
        Event::Abandon,
        Inputs::because(reason),
        |_, _| Ok(()),
    )
    .await
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

/// Applies `event` to the record as the caller saw it (compare-and-swap on
/// its version), after `edit` changed its data.
async fn act(
    core: &Core,
    seen: &CredentialRecord,
    event: Event,
    inputs: Inputs,
    edit: impl Fn(&StoreTx, &mut CredentialRecord) -> Result<()> + Send + Sync + 'static,
) -> Result<CredentialRecord> {
    let seen = seen.clone();
    act_on(core, move |io| {
        let cur = current(io.tx, &seen)?;
        let mut rec = cur.clone();
        edit(io.tx, &mut rec)?;
        io.advance(Some(&cur), &mut rec, event.clone(), &inputs)?;
        Ok(rec)
    })
    .await
}

/// Deletes a stored credential.
pub async fn delete_credential(core: &Core, wallet: &str, id: &str) -> Result<()> {
    core.store
        .transact(|tx| tx.remove_credential(wallet, id).map(|_| ()))?;
    core.store.durable().await
}

// ---- inbound messages (inside the inbox transaction)

/// Handles an issue-credential message from the connection's peer.
pub fn handle(
    core: &Core,
    tx: &StoreTx,
    conn: &Connection,
    msg: &Message,
    after: &mut After,
) -> Result<()> {
    let io = &mut Io { core, tx, after };
    match msg.typ.as_str() {
        OFFER => on_offer(io, conn, msg),
        REQUEST => on_request(io, conn, msg),
        ISSUE => on_credential(io, conn, msg),
        ACK => {
            let cur = thread_record(tx, conn, msg, Role::Issuer)?;
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
    let rec = tx
        .record_by_thid(&conn.wallet_id, thid)?
        .filter(|r| r.role == role)
        .ok_or_else(|| Error::not_found("issue-credential thread", thid))?;
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
    let terms = messages::parse_offer(msg)?;
    let expires = msg.expires_time.map(|s| s as i64 * 1000);
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
    rec.expires_at_ms = msg.expires_time.map(|s| s as i64 * 1000);
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
    if p["aud"] != rec.issuer_did.as_str() {
        return Err("request proof: aud is not the issuer".into());
    }
    Ok(subject)
}

fn on_credential(io: &mut Io, conn: &Connection, msg: &Message) -> Result<()> {
    let cur = expecting(io.tx, conn, msg, Role::Holder, &Event::CredentialVerified)?;
    let mut rec = cur.clone();
    match verify_credential(msg, &cur) {
        Ok(credential) => {
            rec.credential_id = Some(credential.id.clone());
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

/// Checks a received credential against the record: signature by the
/// offer's issuer, our subject DID, and the offered claims and types.
fn verify_credential(
    msg: &Message,
    rec: &CredentialRecord,
) -> std::result::Result<StoredCredential, String> {
    let jwt = messages::attached_jwt(msg).map_err(|e| e.to_string())?;
    let subject = rec.subject_did.as_deref().unwrap_or_default();
    // An offer that did not name its issuer binds the credential to none.
    let issuer = (!rec.issuer_did.is_empty()).then_some(rec.issuer_did.as_str());
    let c = vc::verify(&jwt, issuer, subject, crate::now_secs())
        .map_err(|e| format!("credential: {e}"))?;
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
    })
}

/// A problem report that ends an issue-credential thread (found by
/// `pthid`, or `thid` as some peers send it) moves the record to
/// ProblemReportReceived. Returns false when it is not about a record of
/// the connection's wallet, or only refused one message.
pub fn on_problem(
    core: &Core,
    tx: &StoreTx,
    conn: &Connection,
    msg: &Message,
    after: &mut After,
) -> Result<bool> {
    if !problem_report::ends_thread(msg) {
        return Ok(false);
    }
    let io = &mut Io { core, tx, after };
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

// ---- the outbox's report on tracked messages

/// A tracked message left the outbox: its record's `…Pending` state moves
/// on. A stale note (the peer already answered) changes nothing.
pub fn delivered(
    core: &Core,
    tx: &StoreTx,
    after: &mut After,
    wallet: &str,
    record_id: &str,
    msg_type: &str,
) -> Result<()> {
    let io = &mut Io { core, tx, after };
    let cur = tx.record(wallet, record_id)?;
    let waiting = match cur.state {
        RecordState::OfferPending => OFFER,
        RecordState::RequestPending => REQUEST,
        RecordState::CredentialGenerated => ISSUE,
        RecordState::ProblemReportPending => problem_report::TYPE,
        _ => return Ok(()),
    };
    if waiting != msg_type {
        return Ok(());
    }
    let mut rec = cur.clone();
    rec.meta_next_retry_ms = None;
    io.advance(Some(&cur), &mut rec, Event::Delivered, &Inputs::default())
}

/// A tracked message failed to deliver: the record shows the retries left,
/// when the next is due and why; when the outbox gave up, it is Abandoned.
pub fn delivery_failed(
    core: &Core,
    tx: &StoreTx,
    after: &mut After,
    entry: &crate::store::OutboxEntry,
    gave_up: bool,
) -> Result<()> {
    let Some(record_id) = &entry.record_id else {
        return Ok(());
    };
    let io = &mut Io { core, tx, after };
    let cur = tx.record(&entry.wallet_id, record_id)?;
    let mut rec = cur.clone();
    let error = entry.last_error.clone().unwrap_or_default();
    rec.meta_retries = core
        .config
        .outbox
        .max_retries
        .saturating_sub(entry.attempts);
    rec.meta_last_failure = Some(error.clone());
    rec.meta_next_retry_ms = (!gave_up).then_some(entry.next_attempt_ms);
    if gave_up && !cur.state.is_final() {
        let reason = format!(
            "could not deliver after {} attempts: {error}",
            entry.attempts
        );
        return io.advance(
            Some(&cur),
            &mut rec,
            Event::Abandon,
            &Inputs::because(reason),
        );
    }
    rec.version += 1;
    rec.updated_at_ms = crate::now_ms();
    tx.put_record(Some(&cur), &rec)
}

// ---- expiry and idle timeouts

/// Abandons records whose offer/request expired or whose thread went idle
/// past `issuance.thread_timeout_secs`; prunes old events.
pub async fn sweep(core: Core, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(
        core.config.issuance.sweep_interval_ms,
    ));
    let mut rounds = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = sweep_once(&core).await {
            tracing::error!(error = %e, "sweeping expired records failed");
        }
        rounds += 1;
        if rounds.is_multiple_of(60)
            && let Err(e) = core
                .store
                .prune_events(core.config.issuance.event_retention)
        {
            tracing::error!(error = %e, "pruning events failed");
        }
    }
}

async fn sweep_once(core: &Core) -> Result<()> {
    let now = crate::now_ms();
    for (wallet, id) in core.store.due_records(now, 512)? {
        let expired = commit(core, |io| {
            let cur = io.tx.record(&wallet, &id)?;
            if cur.state.is_final() || cur.deadline_ms.is_none_or(|d| d > now) {
                return Ok(false);
            }
            let reason = match cur.expires_at_ms {
                Some(e) if e <= now => {
                    format!("the {:?} stage expired (expires_time passed)", cur.state)
                }
                _ => format!(
                    "no progress in {:?} for {} s (issuance.thread_timeout_secs)",
                    cur.state, core.config.issuance.thread_timeout_secs
                ),
            };
            let mut rec = cur.clone();
            io.advance(
                Some(&cur),
                &mut rec,
                Event::Abandon,
                &Inputs::because(reason),
            )?;
            Ok(true)
        })
        .await?;
        if expired {
            tracing::info!(%wallet, record = %id, "record abandoned");
        }
    }
    Ok(())
}

// ---- custodial issuance

/// The result of a custodial issuance.
pub struct Custodial {
    pub was_offered: bool,
    pub was_accepted: bool,
    pub issuer: CredentialRecord,
    pub holder: CredentialRecord,
    pub credential: StoredCredential,
}

/// Issuer and holder wallets of this daemon: offer, accept as the holder,
/// issue automatically, and return once the holder has the credential. The
/// messages take the same protocol path as between two agents.
pub async fn custodial(
    core: &Core,
    issuer_wallet: &str,
    holder_wallet: &str,
    spec: &OfferSpec,
    subject_did: Option<&str>,
    wait: Duration,
) -> Result<Custodial> {
    if issuer_wallet == holder_wallet {
        return Err(Error::InvalidArgument(
            "issuer and holder wallets must differ".into(),
        ));
    }
    let until = Instant::now() + wait;
    let mut live = core.events.live();
    let conn = local_connection(core, issuer_wallet, holder_wallet, until).await?;
    let spec = OfferSpec {
        connection_id: conn.id,
        automatic_issuance: true,
        ..spec.clone()
    };
    let offer = create_offer(core, issuer_wallet, &spec).await?;
    // Any state will do: the offer has arrived once the holder has a record.
    let holder = wait_for(core, &mut live, holder_wallet, &offer.thid, |_| true, until).await?;
    let was_accepted = holder.state == RecordState::OfferReceived;
    if was_accepted {
        accept_offer(core, holder_wallet, &holder.id, subject_did).await?;
    }
    let holder = wait_for(
        core,
        &mut live,
        holder_wallet,
        &offer.thid,
        |s| s == RecordState::CredentialReceived,
        until,
    )
    .await?;
    let credential_id = holder.credential_id.clone().unwrap_or_default();
    Ok(Custodial {
        was_offered: true,
        was_accepted,
        issuer: core.store.record(issuer_wallet, &offer.id)?,
        credential: core.store.credential(holder_wallet, &credential_id)?,
        holder,
    })
}

/// An active connection from the issuer wallet to the holder wallet, made
/// with an out-of-band invitation between them when there is none.
async fn local_connection(
    core: &Core,
    issuer: &str,
    holder: &str,
    until: Instant,
) -> Result<Connection> {
    let mut token = String::new();
    loop {
        let page = core
            .store
            .connections(issuer, 100, &token, |c| c.state == ConnectionState::Active)?;
        for c in page.items {
            let peer = c.their_did.as_deref().unwrap_or_default();
            if core
                .store
                .did_owner(peer)?
                .is_some_and(|d| d.wallet_id == holder)
            {
                return Ok(c);
            }
        }
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    let invitation = connections::create_invitation(core, issuer, "custodial", "", "")?;
    connections::accept_invitation(core, holder, &invitation.url, "")?;
    core.store.durable().await?;
    loop {
        let c = core.store.connection(issuer, &invitation.connection.id)?;
        if c.state == ConnectionState::Active {
            return Ok(c);
        }
        if Instant::now() >= until {
            return Err(Error::DeadlineExceeded(
                "the custodial connection did not become active".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the wallet's record of `thid` is in a state `want` accepts;
/// a problem or abandoned state ends the wait with its reason.
async fn wait_for(
    core: &Core,
    live: &mut tokio::sync::broadcast::Receiver<RecordEvent>,
    wallet: &str,
    thid: &str,
    want: impl Fn(RecordState) -> bool,
    until: Instant,
) -> Result<CredentialRecord> {
    loop {
        if let Some(r) = core.store.record_by_thid(wallet, thid)? {
            if want(r.state) {
                return Ok(r);
            }
            if matches!(
                r.state,
                RecordState::ProblemReportPending
                    | RecordState::ProblemReportSent
                    | RecordState::ProblemReportReceived
                    | RecordState::Abandoned
            ) {
                return Err(Error::FailedPrecondition(format!(
                    "record {} ended in {:?}: {}",
                    r.id,
                    r.state,
                    r.problem.unwrap_or_default()
                )));
            }
        }
        let left = until.saturating_duration_since(Instant::now());
        // Any event (or a lag) is a reason to look again.
        if tokio::time::timeout(left, live.recv()).await.is_err() {
            return Err(Error::DeadlineExceeded(format!(
                "thread {thid} did not reach the expected state in time"
            )));
        }
    }
}

#[cfg(test)]
mod tests;
