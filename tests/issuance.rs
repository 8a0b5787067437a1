//! Issue Credential 3.0 between two real daemons over HTTP, and custodial
//! issuance between two wallets of one daemon, all driven over gRPC.

mod common;

use agentd::harness::Clients;
use agentd::rpc::proto::{
    AcceptOfferRequest, CreateOfferRequest, GetCredentialRequest, GetRecordRequest,
    IssueCredentialRequest, IssueCustodialRequest, ListConnectionsRequest, ListCredentialsRequest,
    ListOffersRequest, ListRecordsRequest, MatchCredentialRequest, RecordEvent, RecordState,
    RejectOfferRequest, Role, SubscribeRequest,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{
    DEGREE, by_thid, claims, connect, create_wallet, eventually, offer, start, wait_state,
};
use tokio_stream::StreamExt;
use tonic::Code;

async fn record(d: &Clients, id: &str) -> agentd::rpc::proto::CredentialRecord {
    d.issuance
        .clone()
        .get_record(GetRecordRequest {
            wallet_id: String::new(),
            record_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn collect(d: &Clients) -> tokio::task::JoinHandle<Vec<RecordEvent>> {
    let mut events = d.events.clone();
    tokio::spawn(async move {
        let mut stream = events
            .subscribe(SubscribeRequest {
                from_start: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        until_quiet(&mut stream, 3000).await
    })
}

/// Events from `stream` until none comes for `quiet_ms`.
async fn until_quiet(
    stream: &mut tonic::Streaming<RecordEvent>,
    quiet_ms: u64,
) -> Vec<RecordEvent> {
    let mut events = Vec::new();
    while let Ok(Some(Ok(e))) =
        tokio::time::timeout(std::time::Duration::from_millis(quiet_ms), stream.next()).await
    {
        events.push(e);
    }
    events
}

fn states_of(events: &[RecordEvent], thid: &str) -> Vec<RecordState> {
    let mut states: Vec<RecordState> = events
        .iter()
        .filter(|e| e.thid == thid)
        .map(|e| RecordState::try_from(e.new_state).unwrap())
        .collect();
    states.dedup();
    states
}

/// Verifies a VC-JWT with the `jwt-compact` crate (ed25519-compact keys),
/// given only the Ed25519 key decoded from the issuer's did:key (multibase
/// base58btc, multicodec 0xed01) — neither our resolver nor our verifier.
fn verify_independently(jwt: &str, issuer: &str) -> serde_json::Value {
    use jwt_compact::alg::Ed25519;
    use jwt_compact::{Algorithm, AlgorithmExt, Token, UntrustedToken};
    let multibase = issuer.strip_prefix("did:key:z").expect("a did:key");
    let bytes = bs58::decode(multibase).into_vec().unwrap();
    assert_eq!(&bytes[..2], &[0xed, 0x01], "an Ed25519 did:key");
    let key = <Ed25519 as Algorithm>::VerifyingKey::from_slice(&bytes[2..]).unwrap();
    let untrusted = UntrustedToken::new(jwt).expect("a compact JWS");
    assert_eq!(untrusted.algorithm(), "EdDSA");
    let token: Token<serde_json::Value> = Ed25519
        .validator(&key)
        .validate(&untrusted)
        .expect("the credential verifies independently");
    assert_eq!(
        token.header().key_id.as_deref(),
        Some(format!("{issuer}#z{multibase}").as_str())
    );
    let claims = token.claims();
    let nbf = claims.not_before.unwrap().timestamp();
    let exp = claims.expiration.unwrap().timestamp();
    let now = agentd::now_secs() as i64;
    assert!(nbf <= now && now < exp, "valid now: {nbf} {now} {exp}");
    let mut payload = claims.custom.clone();
    payload["nbf"] = nbf.into();
    payload["exp"] = exp.into();
    assert_eq!(payload["iss"], issuer);
    payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_issuance_between_two_daemons_with_events() {
    let issuer = start("issuer", &[]).await;
    let holder = start("holder", &[]).await;
    let (ic, hc, ci) = connect(&issuer, &holder).await;
    let issuer_events = collect(&ic);
    let holder_events = collect(&hc);

    let mut api = ic.issuance.clone();
    let offered = api
        .create_offer(offer(&ci, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(offered.state, RecordState::OfferPending as i32);
    assert_eq!(offered.role, Role::Issuer as i32);
    // A day of retries (outbox.retry_budget_secs), at most a minute apart.
    assert!(offered.meta_retries > 1400, "{}", offered.meta_retries);
    assert!(offered.issuer_did.starts_with("did:key:z6Mk"));
    let thid = offered.thid.clone();

    // Issuing before the request is an illegal transition.
    let early = api
        .issue_credential(IssueCredentialRequest {
            wallet_id: String::new(),
            record_id: offered.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);

    wait_state(&ic, &thid, RecordState::OfferSent).await;
    let offers = eventually(10, "the offer at the holder", || async {
        let list = hc
            .holder
            .clone()
            .list_offers(ListOffersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .records;
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(offers.len(), 1);
    let h = &offers[0];
    assert_eq!(h.thid, thid);
    assert_eq!(h.types, [DEGREE]);
    assert_eq!(h.issuer_did, offered.issuer_did);
    let claims: serde_json::Value = serde_json::from_str(&h.claims_json).unwrap();
    assert_eq!(claims["degree"]["type"], "BachelorDegree");

    let accepted = hc
        .holder
        .clone()
        .accept_offer(AcceptOfferRequest {
            record_id: h.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.state, RecordState::RequestPending as i32);
    let subject = accepted.subject_did.clone();
    assert!(
        subject.starts_with("did:key:"),
        "a fresh did:key: {subject}"
    );

    let requested = wait_state(&ic, &thid, RecordState::RequestReceived).await;
    assert_eq!(requested.subject_did, subject);
    let issued = api
        .issue_credential(IssueCredentialRequest {
            wallet_id: String::new(),
            record_id: offered.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(issued.state, RecordState::CredentialGenerated as i32);

    let got = wait_state(&hc, &thid, RecordState::CredentialReceived).await;
    let done = eventually(10, "the ack at the issuer", || async {
        Some(record(&ic, &offered.id).await).filter(|r| r.ack_received)
    })
    .await;
    assert_eq!(done.state, RecordState::CredentialSent as i32);
    assert_eq!(done.credential_id, got.credential_id);
    assert!(done.ack_requested);
    assert_eq!(done.format, "prism/jwt");
    assert_eq!(got.domain, offered.issuer_did);

    // At debug, each message's metadata is logged both ways; never a body.
    for (name, agent, sent, received) in [
        ("issuer", &issuer, "offer-credential", "request-credential"),
        ("holder", &holder, "request-credential", "offer-credential"),
    ] {
        let log = agent.log();
        let line = |what: &str, typ: &str| {
            log.lines()
                .any(|l| l.contains(what) && l.contains(typ) && l.contains(&thid))
        };
        assert!(line("message out", sent), "{name} logged no {sent} out");
        assert!(
            line("message in", received),
            "{name} logged no {received} in"
        );
        assert!(!log.contains("Computer Science"), "a claim in {name}'s log");
    }

    let credential = hc
        .holder
        .clone()
        .get_credential(GetCredentialRequest {
            wallet_id: String::new(),
            credential_id: got.credential_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(credential.issuer, offered.issuer_did);
    assert_eq!(credential.subject, subject);
    let payload = verify_independently(&credential.jwt, &offered.issuer_did);
    assert_eq!(payload["sub"], subject.as_str());
    assert_eq!(payload["jti"], credential.id.as_str());
    assert_eq!(
        payload["exp"].as_u64().unwrap() - payload["nbf"].as_u64().unwrap(),
        3600
    );
    assert_eq!(
        payload["vc"]["type"],
        serde_json::json!(["VerifiableCredential", DEGREE])
    );
    assert_eq!(payload["vc"]["credentialSubject"]["name"], "Alice Example");
    assert_eq!(payload["vc"]["credentialSubject"]["id"], subject.as_str());
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(credential.jwt.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");

    let matched = hc
        .holder
        .clone()
        .match_credential(MatchCredentialRequest {
            wallet_id: String::new(),
            r#type: DEGREE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(matched.id, credential.id);
    let none = hc
        .holder
        .clone()
        .match_credential(MatchCredentialRequest {
            wallet_id: String::new(),
            r#type: "DriverLicense".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::NotFound);
    let listed = hc
        .holder
        .clone()
        .list_credentials(ListCredentialsRequest {
            r#type: DEGREE.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .credentials;
    assert_eq!(listed, std::slice::from_ref(&credential));

    // Every state of both sides, in order.
    use RecordState::*;
    assert_eq!(
        states_of(&issuer_events.await.unwrap(), &thid),
        [
            OfferPending,
            OfferSent,
            RequestReceived,
            CredentialPending,
            CredentialGenerated,
            CredentialSent
        ]
    );
    let holder_seen = holder_events.await.unwrap();
    // RequestSent is recorded when the outbox sees the request delivered; the
    // issuer may answer with the credential first, and a record that already
    // holds its credential does not step back.
    let mut holder_states = states_of(&holder_seen, &thid);
    if holder_states.get(2) == Some(&RequestSent) {
        holder_states.remove(2);
    }
    assert_eq!(
        holder_states,
        [OfferReceived, RequestPending, CredentialReceived]
    );
    // Sequence numbers increase by one per committed event.
    for w in holder_seen.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
    }

    // A late subscriber asks for what came after a cursor and gets exactly that.
    let cursor = holder_seen[1].seq;
    let mut late = hc
        .events
        .clone()
        .subscribe(SubscribeRequest {
            after_seq: cursor,
            thid: thid.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let replayed = until_quiet(&mut late, 500).await;
    assert_eq!(replayed, holder_seen[2..].to_vec());

    // Deleting the credential leaves the record and removes the credential.
    let id = GetCredentialRequest {
        wallet_id: String::new(),
        credential_id: credential.id.clone(),
        ..Default::default()
    };
    hc.holder
        .clone()
        .delete_credential(id.clone())
        .await
        .unwrap();
    let gone = hc
        .holder
        .clone()
        .get_credential(id.clone())
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let again = hc.holder.clone().delete_credential(id).await.unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    assert_eq!(
        by_thid(&hc, &thid).await.unwrap().state,
        RecordState::CredentialReceived as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_issuance_rejection_and_bad_requests() {
    let issuer = start("issuer", &[]).await;
    let holder = start("holder", &[]).await;
    let (ic, hc, ci) = connect(&issuer, &holder).await;
    let mut api = ic.issuance.clone();

    // Bad input on the control plane changes nothing.
    let e = api
        .create_offer(CreateOfferRequest {
            claims_json: "[1, 2]".into(),
            ..offer(&ci, true)
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = api
        .create_offer(offer("no-such-connection", true))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.metadata().get("x-agentd-reason").unwrap(), "NOT_FOUND");
    let none = api
        .list_records(ListRecordsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .records;
    assert!(none.is_empty());

    // The same idempotency key returns the same record.
    let keyed = CreateOfferRequest {
        idempotency_key: "order-42".into(),
        ..offer(&ci, true)
    };
    let first = api.create_offer(keyed.clone()).await.unwrap().into_inner();
    let again = api.create_offer(keyed).await.unwrap().into_inner();
    assert_eq!(first.id, again.id);

    let h = wait_state(&hc, &first.thid, RecordState::OfferReceived).await;
    // Two accepts race on one record: exactly one wins.
    let accept = || async {
        hc.holder
            .clone()
            .accept_offer(AcceptOfferRequest {
                record_id: h.id.clone(),
                ..Default::default()
            })
            .await
    };
    let (x, y) = tokio::join!(accept(), accept());
    let codes = [
        x.as_ref().err().map(|e| e.code()),
        y.as_ref().err().map(|e| e.code()),
    ];
    assert_eq!(codes.iter().filter(|c| c.is_none()).count(), 1, "{codes:?}");
    assert!(codes.contains(&Some(Code::FailedPrecondition)), "{codes:?}");

    wait_state(&hc, &first.thid, RecordState::CredentialReceived).await;
    eventually(10, "issuer done with ack", || async {
        Some(record(&ic, &first.id).await)
            .filter(|r| r.state == RecordState::CredentialSent as i32 && r.ack_received)
    })
    .await;

    // The holder rejects the next offer: a problem report in the thread.
    let second = api
        .create_offer(offer(&ci, true))
        .await
        .unwrap()
        .into_inner();
    let h2 = wait_state(&hc, &second.thid, RecordState::OfferReceived).await;
    hc.holder
        .clone()
        .reject_offer(RejectOfferRequest {
            record_id: h2.id.clone(),
            reason: "not my degree".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    wait_state(&hc, &second.thid, RecordState::ProblemReportSent).await;
    let refused = wait_state(&ic, &second.thid, RecordState::ProblemReportReceived).await;
    assert!(
        refused.problem.contains("not my degree"),
        "{}",
        refused.problem
    );
    // Accepting after rejecting is illegal.
    let e = hc
        .holder
        .clone()
        .accept_offer(AcceptOfferRequest {
            record_id: h2.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custodial_issuance_in_one_call() {
    let d = start("custodial", &[]).await;
    let c = d.clients().await.unwrap();
    create_wallet(&c, "alice").await;
    let mut api = c.issuance.clone();
    for round in 0..2 {
        let r = api
            .issue_custodial(IssueCustodialRequest {
                holder_wallet_id: "alice".into(),
                claims_json: claims(),
                types: vec![DEGREE.into()],
                validity_period_secs: 600,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.was_offered && r.was_accepted, "round {round}");
        let holder = r.holder_record.unwrap();
        assert_eq!(holder.state, RecordState::CredentialReceived as i32);
        assert_eq!(holder.wallet_id, "alice");
        let issuer = r.issuer_record.unwrap();
        assert_eq!(issuer.thid, holder.thid);
        let credential = r.credential.unwrap();
        assert_eq!(credential.wallet_id, "alice");
        verify_independently(&credential.jwt, &issuer.issuer_did);
    }
    // The second call reused the connection between the two wallets.
    let conns = c
        .connections
        .clone()
        .list_connections(ListConnectionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .connections;
    assert_eq!(conns.len(), 1);
    let e = api
        .issue_custodial(IssueCustodialRequest {
            holder_wallet_id: "nobody".into(),
            claims_json: claims(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}
