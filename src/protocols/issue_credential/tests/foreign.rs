//! Messages as other agents shape them (Identus's offers, W3C formats,
//! attachment encodings, acks): what agentd answers, and what it binds.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::*;
use crate::didcomm::Attachment;

fn attachment(format: &str, data: Value) -> Attachment {
    Attachment {
        id: Some("a1".into()),
        media_type: None,
        format: Some(format.into()),
        data: data.as_object().cloned().unwrap(),
        extra: Default::default(),
    }
}

/// An offer as Identus sends it: thid apart from id, the preview type it
/// uses, a JSON value as base64url, `options` and `presentation_definition`
/// (with the null `jws`/`hash` didcomm-jvm writes), no `credential`.
fn identus_offer(domain: &str) -> Message {
    let mut m = Message::new(
        OFFER,
        json!({
            "goal_code": "Offer Credential",
            "credential_preview": {
                "type": "https://didcomm.org/issue-credential/3.0/credential-credential",
                "body": {"attributes": [
                    {"name": "name", "value": "Alice"},
                    {"name": "level", "value": URL_SAFE.encode("3"), "media_type": "application/json"},
                ]},
            },
        }),
    );
    m.thid = Some("identus-thread".into());
    m.attachments = vec![attachment(
        messages::FORMAT,
        json!({"json": {
            "options": {"challenge": "challenge-1", "domain": domain},
            "presentation_definition": {"id": "pd", "input_descriptors": []},
        }, "jws": null, "hash": null}),
    )];
    m
}

/// The holder's queued request, taken out of the outbox so the issuer
/// wallet (which has no record of a hand-made offer) never sees it.
fn take_request(t: &TestCore) -> Message {
    let out = t.core.store.outbox_all().unwrap();
    assert_eq!(out.len(), 1, "one request queued");
    t.core
        .store
        .transact(|tx| tx.remove_outbox(&out[0].id))
        .unwrap();
    serde_json::from_str(&out[0].message).unwrap()
}

/// A VC-JWT for the holder's record, signed by `issuer`, in a message as
/// Identus sends it (padded base64url, no media type).
fn credential_from(t: &TestCore, issuer: &DidRecord, h: &CredentialRecord) -> Message {
    let key = t.core.store.key("issuer", &issuer.signing_key_id).unwrap();
    let spec = vc::CredentialSpec {
        id: "urn:uuid:foreign",
        types: &[],
        contexts: &[],
        subject: h.subject_did.as_deref().unwrap(),
        claims: &h.claims,
        schema_id: None,
        issued_at: crate::now_secs(),
        validity_secs: 60,
        status: None,
    };
    let jwt = vc::issue(&t.core.keys, issuer, &key, &spec).unwrap();
    let mut m = in_thread(ISSUE, &h.thid);
    m.attachments = vec![attachment(
        messages::FORMAT,
        json!({"base64": URL_SAFE.encode(&jwt)}),
    )];
    m
}

/// Offer, accept, check the request; returns the holder's record.
async fn accepted_identus_offer(t: &TestCore, ci: &Connection, domain: &str) -> CredentialRecord {
    send_as(t, ci, &identus_offer(domain)).await;
    let h = holder_record(t, "identus-thread");
    assert_eq!(h.state, OfferReceived);
    assert_eq!(
        h.claims,
        *json!({"name": "Alice", "level": 3}).as_object().unwrap()
    );
    assert_eq!((h.issuer_did.as_str(), h.domain.as_str()), ("", domain));
    t.protocols
        .issuance
        .accept_offer("holder", &h.id, None)
        .await
        .unwrap();
    let request = take_request(t);
    assert_eq!(request.thid.as_deref(), Some("identus-thread"));
    let jwt = messages::attached_jwt(&request).unwrap();
    let proof = vc::verify_jwt(&jwt).unwrap().payload;
    assert_eq!(
        proof["aud"], domain,
        "the proof is addressed to options.domain"
    );
    assert_eq!(proof["nonce"], "challenge-1");
    holder_record(t, "identus-thread")
}

#[tokio::test]
async fn an_identus_offer_is_answered_to_its_domain_and_its_credential_kept() {
    let t = testing::core();
    let (ci, _) = t.connect("issuer", "holder").await;
    let issuer = t.did("issuer", DidMethod::Key);
    let h = accepted_identus_offer(&t, &ci, &issuer.did).await;
    send_as(&t, &ci, &credential_from(&t, &issuer, &h)).await;
    let h = holder_record(&t, "identus-thread");
    assert_eq!(h.state, CredentialReceived, "{:?}", h.problem);
    assert_eq!(held_credential(&t, &h).issuer, issuer.did);
}

#[tokio::test]
async fn a_credential_from_an_issuer_the_offer_did_not_point_to_is_refused() {
    let t = testing::core();
    let (ci, _) = t.connect("issuer", "holder").await;
    let named = t.did("issuer", DidMethod::Key);
    let other = t.did("issuer", DidMethod::Key);
    let h = accepted_identus_offer(&t, &ci, &named.did).await;
    send_as(&t, &ci, &credential_from(&t, &other, &h)).await;
    let h = holder_record(&t, "identus-thread");
    assert_eq!(h.state, ProblemReportSent);
    assert!(
        h.problem.as_deref().unwrap().contains("issued by"),
        "{:?}",
        h.problem
    );
    assert_eq!(holds_credentials(&t, "holder"), 0);
}

#[tokio::test]
async fn an_offer_without_challenge_or_audience_cannot_be_accepted() {
    let t = testing::core();
    let (ci, _) = t.connect("issuer", "holder").await;
    let mut offer = identus_offer("");
    offer.attachments.clear();
    send_as(&t, &ci, &offer).await;
    let h = holder_record(&t, "identus-thread");
    let err = t
        .protocols
        .issuance
        .accept_offer("holder", &h.id, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
    assert_eq!(holder_record(&t, "identus-thread").state, OfferReceived);
}

/// Sends `offer` to the holder and returns the problem report it answers
/// with (kept out of the issuer wallet).
async fn refused_offer(t: &TestCore, ci: &Connection, offer: &Message) -> Message {
    queue_as(t, ci, offer);
    one_round(t).await;
    let report = take_request(t);
    assert_eq!(report.typ, problem_report::TYPE);
    assert_eq!(report.pthid.as_deref(), Some(offer.thread_id()));
    assert!(all_records(t, "holder").is_empty());
    report
}

#[tokio::test]
async fn offers_in_formats_not_spoken_or_by_link_are_refused_with_a_problem_report() {
    let t = testing::core();
    let (ci, _) = t.connect("issuer", "holder").await;
    let mut anoncreds = identus_offer("d");
    anoncreds.attachments = vec![attachment(
        "anoncreds/credential-offer@v1.0",
        json!({"base64": "e30"}),
    )];
    let report = refused_offer(&t, &ci, &anoncreds).await;
    assert_eq!(report.body["code"], "e.m.msg.unsupported");
    let why = report.body["args"][1].as_str().unwrap();
    assert!(
        why.contains("anoncreds/credential-offer@v1.0") && why.contains("jwt_vc_json"),
        "{why}"
    );

    let mut linked = identus_offer("d");
    linked.id = "linked".into();
    linked.thid = None;
    linked.attachments = vec![attachment(
        messages::FORMAT,
        json!({"links": ["https://issuer.example/offer.json"], "hash": "abc"}),
    )];
    let report = refused_offer(&t, &ci, &linked).await;
    assert!(report.body["args"][1].as_str().unwrap().contains("links"));
}

#[tokio::test]
async fn base64_offers_and_credo_style_previews_are_read() {
    let t = testing::core();
    let (ci, _) = t.connect("issuer", "holder").await;
    let mut offer = identus_offer("did:key:z6Mkdomain");
    offer.body["credential_preview"] = json!({
        "type": "https://didcomm.org/issue-credential/3.0/credential-preview",
        "attributes": [
            {"name": "name", "value": "Alice"},
            {"name": "level", "value": "3", "mime-type": "application/json"},
        ],
    });
    let options = json!({"options": {"challenge": "c", "domain": "did:key:z6Mkdomain"}});
    offer.attachments = vec![attachment(
        messages::FORMAT,
        json!({"base64": URL_SAFE_NO_PAD.encode(options.to_string())}),
    )];
    send_as(&t, &ci, &offer).await;
    let h = holder_record(&t, "identus-thread");
    assert_eq!(
        h.claims,
        *json!({"name": "Alice", "level": 3}).as_object().unwrap()
    );
    assert_eq!(h.domain, "did:key:z6Mkdomain");
}

#[tokio::test]
async fn the_w3c_formats_run_end_to_end() {
    for format in ["jwt_vc_json", "vc+jwt"] {
        let t = testing::core();
        let (ci, _) = t.connect("issuer", "holder").await;
        let spec = OfferSpec {
            format: Some(format.into()),
            ..spec(&ci, true)
        };
        let rec = t
            .protocols
            .issuance
            .create_offer("issuer", &spec)
            .await
            .unwrap();
        let offer = messages::offer(&rec);
        assert_eq!(offer.attachments[0].format.as_deref(), Some(format));
        let vc = &offer.attachments[0].data["json"]["credential"];
        assert_eq!(vc["credentialSubject"]["level"], 3, "{format}: {vc}");
        assert_eq!(
            vc["type"],
            json!(["VerifiableCredential", "TestCredential"])
        );
        assert_eq!(vc["issuer"], rec.issuer_did.as_str());
        t.drain().await;
        let h = holder_record(&t, &rec.thid);
        assert_eq!(
            (h.format.as_str(), h.issuer_did.as_str()),
            (format, rec.issuer_did.as_str())
        );
        assert_eq!(h.types, ["TestCredential"]);
        t.protocols
            .issuance
            .accept_offer("holder", &h.id, None)
            .await
            .unwrap();
        t.drain().await;
        let done = t.core.store.record("issuer", &rec.id).unwrap();
        assert_eq!(done.state, CredentialSent, "{format}: {:?}", done.problem);
        assert_eq!(holder_record(&t, &rec.thid).state, CredentialReceived);
    }
    let t = testing::core();
    let (ci, _) = t.connect("issuer", "holder").await;
    let spec = OfferSpec {
        format: Some("ldp_vc".into()),
        ..spec(&ci, true)
    };
    let err = t
        .protocols
        .issuance
        .create_offer("issuer", &spec)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[tokio::test]
async fn acks_are_sent_when_asked_and_counted_when_asked_for() {
    // Not asked: the holder sends no ack, and one sent anyway is only noted.
    let t = testing::core_with(|c| c.issuance.please_ack = false);
    let (ci, ch) = t.connect("issuer", "holder").await;
    let rec = offer_and_accept(&t, &ci, true).await;
    assert_eq!(rec.state, CredentialSent);
    assert!(!rec.ack_received && !rec.ack_requested);
    assert!(!holder_record(&t, &rec.thid).ack_requested);
    send_as(&t, &ch, &in_thread(NOTIFICATION_ACK, &rec.thid)).await;
    assert_eq!(t.core.store.record("issuer", &rec.id).unwrap(), rec);

    // Asked: the generic notification ack counts as well as the protocol's.
    let t = testing::core();
    let (ci, ch) = t.connect("issuer", "holder").await;
    let rec = offer_and_accept(&t, &ci, false).await;
    t.protocols.issuance.issue("issuer", &rec.id).await.unwrap();
    one_round(&t).await;
    let ack = take_request(&t);
    assert_eq!(ack.typ, ACK, "the holder acks when asked");
    let rec = t.core.store.record("issuer", &rec.id).unwrap();
    assert!(rec.ack_requested && !rec.ack_received);
    send_as(&t, &ch, &in_thread(NOTIFICATION_ACK, &rec.thid)).await;
    assert!(t.core.store.record("issuer", &rec.id).unwrap().ack_received);
}
