//! Both roles in one core (two wallets), messages pumped by hand, so each
//! refusal can be checked against the records it must leave alone.

use serde_json::json;

use super::*;
use crate::didcomm::Message;
use crate::store::RecordState::*;
use crate::testing::{self, TestCore};
use crate::vc;

mod foreign;

fn spec(conn: &Connection, automatic: bool) -> OfferSpec {
    OfferSpec {
        connection_id: conn.id.clone(),
        claims_json: json!({"name": "Alice", "level": 3}).to_string(),
        types: vec!["TestCredential".into()],
        validity_period_secs: 600,
        automatic_issuance: automatic,
        ..Default::default()
    }
}

fn holder_record(t: &TestCore, thid: &str) -> CredentialRecord {
    t.core
        .store
        .record_by_thid("holder", thid)
        .unwrap()
        .expect("holder record")
}

/// Issuer wallet "issuer", holder wallet "holder": an offer accepted by the
/// holder. Returns the issuer's record after the request arrived.
async fn offered_and_requested(
    t: &TestCore,
    automatic: bool,
) -> (Connection, Connection, CredentialRecord) {
    let (ci, ch) = t.connect("issuer", "holder").await;
    let rec = offer_and_accept(t, &ci, automatic).await;
    (ci, ch, rec)
}

/// Offers on `ci`, accepts as "holder", lets the messages flow; returns the
/// issuer's record.
async fn offer_and_accept(t: &TestCore, ci: &Connection, automatic: bool) -> CredentialRecord {
    let offer = t
        .protocols
        .issuance
        .create_offer("issuer", &spec(ci, automatic))
        .await
        .unwrap();
    t.drain().await;
    let h = holder_record(t, &offer.thid);
    assert_eq!(h.state, OfferReceived);
    t.protocols
        .issuance
        .accept_offer("holder", &h.id, None)
        .await
        .unwrap();
    t.drain().await;
    t.core.store.record("issuer", &offer.id).unwrap()
}

#[tokio::test]
async fn automatic_issuance_runs_to_the_end() {
    let t = testing::core();
    let (_, _, rec) = offered_and_requested(&t, true).await;
    assert_eq!(rec.state, CredentialSent, "{:?}", rec.problem);
    assert!(rec.ack_received);
    let h = holder_record(&t, &rec.thid);
    assert_eq!(h.state, CredentialReceived);
    let c = held_credential(&t, &h);
    assert_eq!(c.issuer, rec.issuer_did);
    assert_eq!(c.claims["level"], 3);
}

/// The credential the holder's record received.
fn held_credential(t: &TestCore, h: &CredentialRecord) -> StoredCredential {
    let id = h.credential_id.as_deref().expect("a credential id");
    t.core.store.credential("holder", id).unwrap()
}

/// Sends `msg` from our side of `conn` to its peer and lets it be handled.
async fn send_as(t: &TestCore, conn: &Connection, msg: &Message) {
    queue_as(t, conn, msg);
    t.drain().await;
}

/// Queues `msg` from our side of `conn`, to be sent by `drain` or
/// [`one_round`] (which read the outbox themselves).
fn queue_as(t: &TestCore, conn: &Connection, msg: &Message) {
    let their = conn.their_did.clone().unwrap();
    let _queued = After::transact(&t.core, |tx, after| {
        outbox::enqueue(tx, after, &conn.wallet_id, &conn.our_did, &their, msg)
    })
    .unwrap();
}

/// Delivers what is queued and handles what arrived, once: answers stay
/// queued, to be looked at.
async fn one_round(t: &TestCore) {
    crate::didcomm::outbox::attempt(&t.transport, t.core.store.outbox_all().unwrap()).await;
    crate::didcomm::inbox::process(&t.transport, t.core.store.inbox_batch(10).unwrap()).await;
}

fn all_records(t: &TestCore, wallet: &str) -> Vec<CredentialRecord> {
    t.core
        .store
        .records(wallet, 100, "", |_| true)
        .unwrap()
        .items
}

fn holds_credentials(t: &TestCore, wallet: &str) -> usize {
    t.core
        .store
        .credentials(wallet, 100, "", |_| true)
        .unwrap()
        .items
        .len()
}

fn in_thread(typ: &str, thid: &str) -> Message {
    let mut m = Message::new(typ, json!({}));
    m.thid = Some(thid.to_string());
    m
}

#[tokio::test]
async fn out_of_order_messages_are_refused_and_change_nothing() {
    let t = testing::core();
    let (ci, ch) = t.connect("issuer", "holder").await;

    // A credential nobody asked for, and a request for a thread nobody has.
    send_as(&t, &ci, &in_thread(ISSUE, "no-such-thread")).await;
    send_as(&t, &ch, &in_thread(REQUEST, "no-such-thread")).await;
    assert!(all_records(&t, "holder").is_empty());
    assert!(all_records(&t, "issuer").is_empty());
    assert_eq!(holds_credentials(&t, "holder"), 0);

    // An offer whose claims are not a JSON object.
    let mut bad = Message::new(OFFER, json!({}));
    bad.attachments = vec![crate::didcomm::Attachment {
        id: None,
        media_type: Some("application/json".into()),
        format: Some(messages::FORMAT.into()),
        data: json!({"json": {"credential": {"claims": [1, 2]}}})
            .as_object()
            .cloned()
            .unwrap(),
        extra: Default::default(),
    }];
    send_as(&t, &ci, &bad).await;
    assert!(all_records(&t, "holder").is_empty());

    // A finished thread takes no second request.
    let offer = offer_and_accept(&t, &ci, true).await;
    assert_eq!(offer.state, CredentialSent);
    let before = (all_records(&t, "issuer"), all_records(&t, "holder"));
    send_as(&t, &ch, &in_thread(REQUEST, &offer.thid)).await;
    send_as(&t, &ci, &in_thread(ISSUE, &offer.thid)).await;
    assert_eq!(
        (all_records(&t, "issuer"), all_records(&t, "holder")),
        before
    );
    assert_eq!(holds_credentials(&t, "holder"), 1);
}

#[tokio::test]
async fn a_message_from_another_peer_cannot_touch_a_thread() {
    let t = testing::core();
    let (ci, _) = t.connect("issuer", "holder").await;
    let (mallory, _) = t.connect("mallory", "holder").await;
    let offer = offer_and_accept(&t, &ci, false).await;
    let before = holder_record(&t, &offer.thid);
    assert_eq!(before.state, RequestSent);

    // Mallory knows the thread id and sends a credential and a problem
    // report in it over her own connection with the holder.
    let mallory_did = crate::wallet::create_did(
        &t.core,
        "mallory",
        DidMethod::Key,
        crate::store::KeyType::Ed25519,
        "issuer",
    )
    .unwrap();
    let key = t
        .core
        .store
        .key("mallory", &mallory_did.signing_key_id)
        .unwrap();
    let mut forged = before.clone();
    forged.issuer_did = mallory_did.did.clone();
    let jwt = vc::issue(
        &t.core.keys,
        &mallory_did,
        &key,
        &vc::CredentialSpec {
            id: "urn:uuid:forged",
            types: &forged.types,
            contexts: &[],
            subject: forged.subject_did.as_deref().unwrap(),
            claims: &forged.claims,
            schema_id: None,
            issued_at: crate::now_secs(),
            validity_secs: 60,
            status: None,
        },
    )
    .unwrap();
    send_as(&t, &mallory, &messages::issue(&forged, &jwt)).await;
    send_as(
        &t,
        &mallory,
        &problem_report::in_thread(&offer.thid, "e.p.x", "stop"),
    )
    .await;
    assert_eq!(holder_record(&t, &offer.thid), before);
    assert_eq!(holds_credentials(&t, "holder"), 0);

    // The real issuer still completes the thread.
    t.protocols
        .issuance
        .issue("issuer", &offer.id)
        .await
        .unwrap();
    t.drain().await;
    assert_eq!(holder_record(&t, &offer.thid).state, CredentialReceived);
}

/// A credential the holder must refuse: both sides end in a problem-report
/// state with the reason, and nothing is stored.
async fn refused_credential(
    tamper: impl Fn(&TestCore, &CredentialRecord) -> String,
) -> (CredentialRecord, CredentialRecord) {
    let t = testing::core();
    let (ci, _) = t.connect("issuer", "holder").await;
    let rec = offer_and_accept(&t, &ci, false).await;
    assert_eq!(rec.state, RequestReceived);
    let jwt = tamper(&t, &rec);
    send_as(&t, &ci, &messages::issue(&rec, &jwt)).await;
    assert_eq!(holds_credentials(&t, "holder"), 0);
    let h = holder_record(&t, &rec.thid);
    assert_eq!(h.state, ProblemReportSent);
    let i = t.core.store.record("issuer", &rec.id).unwrap();
    assert_eq!(i.state, ProblemReportReceived);
    (i, h)
}

fn sign_payload(t: &TestCore, signer: &DidRecord, kid: &str, payload: &Value) -> String {
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!(
        "{}.{}",
        b64(&json!({"alg": "EdDSA", "kid": kid})),
        b64(payload)
    );
    let sig = t
        .core
        .keys
        .sign(&signer.wallet_id, &signer.signing_key_id, input.as_bytes())
        .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn genuine_payload(t: &TestCore, rec: &CredentialRecord) -> Value {
    let issuer = t.core.store.did(&rec.wallet_id, &rec.issuer_did).unwrap();
    let key = t
        .core
        .store
        .key(&rec.wallet_id, &issuer.signing_key_id)
        .unwrap();
    let spec = vc::CredentialSpec {
        id: "urn:uuid:1",
        types: &rec.types,
        contexts: &[],
        subject: rec.subject_did.as_deref().unwrap(),
        claims: &rec.claims,
        schema_id: None,
        issued_at: crate::now_secs(),
        validity_secs: 60,
        status: None,
    };
    let jwt = vc::issue(&t.core.keys, &issuer, &key, &spec).unwrap();
    vc::verify_jwt(&jwt).unwrap().payload
}

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[tokio::test]
async fn a_credential_signed_by_another_key_is_refused_on_both_sides() {
    let (issuer, holder) = refused_credential(|t, rec| {
        let other = t.did("issuer", DidMethod::Key);
        // The issuer's kid, another key's signature.
        sign_payload(
            t,
            &other,
            &vc::key_id(&rec.issuer_did),
            &genuine_payload(t, rec),
        )
    })
    .await;
    assert!(
        holder.problem.as_deref().unwrap().contains("signature"),
        "{:?}",
        holder.problem
    );
    assert!(
        issuer.problem.as_deref().unwrap().contains("signature"),
        "{:?}",
        issuer.problem
    );
}

#[tokio::test]
async fn a_credential_with_other_claims_or_subject_is_refused() {
    let (_, holder) = refused_credential(|t, rec| {
        let issuer = t.core.store.did(&rec.wallet_id, &rec.issuer_did).unwrap();
        let mut p = genuine_payload(t, rec);
        p["vc"]["credentialSubject"]["level"] = json!(99);
        sign_payload(t, &issuer, &vc::key_id(&issuer.did), &p)
    })
    .await;
    assert!(
        holder
            .problem
            .as_deref()
            .unwrap()
            .contains("not the offered"),
        "{:?}",
        holder.problem
    );

    let (_, holder) = refused_credential(|t, rec| {
        let issuer = t.core.store.did(&rec.wallet_id, &rec.issuer_did).unwrap();
        let mut p = genuine_payload(t, rec);
        p["sub"] = json!("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK");
        sign_payload(t, &issuer, &vc::key_id(&issuer.did), &p)
    })
    .await;
    assert!(
        holder.problem.as_deref().unwrap().contains("sub"),
        "{:?}",
        holder.problem
    );
}

#[tokio::test]
async fn two_issue_calls_on_one_record_exactly_one_wins() {
    let t = testing::core();
    let (_, _, rec) = offered_and_requested(&t, false).await;
    assert_eq!(rec.state, RequestReceived);
    let (a, b) = tokio::join!(
        t.protocols.issuance.issue("issuer", &rec.id),
        t.protocols.issuance.issue("issuer", &rec.id)
    );
    let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{a:?} {b:?}");
    let loser = if a.is_err() { a } else { b };
    assert!(matches!(loser, Err(Error::FailedPrecondition(_))));
    t.drain().await;
    assert_eq!(holds_credentials(&t, "holder"), 1);
}

#[tokio::test]
async fn an_unknown_message_type_is_answered_with_a_problem_report() {
    let t = testing::core();
    let (ci, ch) = t.connect("issuer", "holder").await;
    let odd = Message::new("https://example.org/no-such-protocol/1.0/hello", json!({}));
    queue_as(&t, &ci, &odd);
    one_round(&t).await;
    let answers = t.core.store.outbox_all().unwrap();
    assert_eq!(answers.len(), 1);
    let report: Message = serde_json::from_str(&answers[0].message).unwrap();
    assert_eq!(report.typ, problem_report::TYPE);
    assert_eq!(report.pthid.as_deref(), Some(odd.id.as_str()));
    assert_eq!(report.body["code"], "e.m.msg.unsupported");
    assert_eq!(answers[0].from, ch.our_did);
    assert!(all_records(&t, "holder").is_empty());
    t.drain().await;
}

/// An issuer that lost a thread answers the holder's next message with
/// `unknown-thread`: the waiting holder record ends at once instead of
/// waiting for the idle timeout. A warning changes nothing.
#[tokio::test]
async fn an_error_report_about_a_waiting_thread_ends_the_record() {
    let t = testing::core();
    let (ci, _) = t.connect("issuer", "holder").await;
    let offer = offer_and_accept(&t, &ci, false).await;
    assert_eq!(holder_record(&t, &offer.thid).state, RequestSent);

    send_as(
        &t,
        &ci,
        &problem_report::in_thread(&offer.thid, "w.m.slow", "busy"),
    )
    .await;
    assert_eq!(holder_record(&t, &offer.thid).state, RequestSent);

    send_as(
        &t,
        &ci,
        &problem_report::in_thread(&offer.thid, "e.m.msg.unknown-thread", "what thread?"),
    )
    .await;
    let h = holder_record(&t, &offer.thid);
    assert_eq!(h.state, ProblemReportReceived);
    assert!(h.problem.unwrap().contains("unknown-thread"));
}

/// A peer may keep only so many unfinished records with us: past the
/// quota its offer is refused, and the report ends its record too.
#[tokio::test]
async fn offers_past_the_per_connection_quota_are_refused() {
    let t = testing::core_with(|c| c.issuance.max_open_records_per_connection = 2);
    let (ci, _) = t.connect("issuer", "holder").await;
    let mut offers = Vec::new();
    for _ in 0..3 {
        offers.push(
            t.protocols
                .issuance
                .create_offer("issuer", &spec(&ci, false))
                .await
                .unwrap(),
        );
        t.drain().await;
    }
    let held = all_records(&t, "holder");
    assert_eq!(held.len(), 2, "the third offer made no record");
    let third = t.core.store.record("issuer", &offers[2].id).unwrap();
    assert_eq!(third.state, ProblemReportReceived, "{:?}", third.problem);
    assert!(third.problem.unwrap().contains("me.res"));
    // A finished record frees its place.
    let h = holder_record(&t, &offers[0].thid);
    t.protocols
        .issuance
        .reject_offer("holder", &h.id, "")
        .await
        .unwrap();
    t.drain().await;
    t.protocols
        .issuance
        .create_offer("issuer", &spec(&ci, false))
        .await
        .unwrap();
    t.drain().await;
    assert_eq!(all_records(&t, "holder").len(), 3);
}

/// Claims are bounded in size, from our control plane and from a peer.
#[tokio::test]
async fn claims_over_the_size_limit_are_refused() {
    let t = testing::core_with(|c| c.issuance.max_claims_bytes = 100);
    let (ci, _) = t.connect("issuer", "holder").await;
    let mut big = spec(&ci, false);
    big.claims_json = json!({"blob": "x".repeat(200)}).to_string();
    let err = t
        .protocols
        .issuance
        .create_offer("issuer", &big)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // A peer's offer with the same claims (in the preview) is refused.
    let mut offer = Message::new(
        OFFER,
        json!({"credential_preview": {"body": {"attributes": [{"name": "blob", "value": "x".repeat(200)}]}}}),
    );
    offer.thid = Some(offer.id.clone());
    send_as(&t, &ci, &offer).await;
    assert!(all_records(&t, "holder").is_empty());
}

/// Attachments may carry `json` or `links` data instead of `base64`: a
/// credential message with either is refused with a reason, never a panic.
#[tokio::test]
async fn json_and_links_attachments_do_not_panic() {
    let t = testing::core();
    let (ci, _) = t.connect("issuer", "holder").await;
    let rec = offer_and_accept(&t, &ci, false).await;
    for data in [
        json!({"json": {"jwt": "x"}}),
        json!({"links": ["https://x"]}),
    ] {
        let mut m = in_thread(ISSUE, &rec.thid);
        m.attachments = vec![crate::didcomm::Attachment {
            id: None,
            media_type: None,
            format: Some(messages::FORMAT.into()),
            data: data.as_object().cloned().unwrap(),
            extra: Default::default(),
        }];
        send_as(&t, &ci, &m).await;
    }
    let h = holder_record(&t, &rec.thid);
    assert!(
        matches!(h.state, ProblemReportPending | ProblemReportSent),
        "{:?}",
        h.state
    );
    assert!(
        h.problem.is_some(),
        "the bad credential was refused with a reason"
    );
}
