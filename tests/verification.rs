//! VerifyCredential and the holder's view of status, on real daemons: one
//! issues, another holds and verifies (fetching the issuer's status list
//! over HTTP), each check failing on its own.

mod common;

use std::time::Duration;

use agentd::harness::Clients;
use agentd::rpc::proto::{
    self, AddTrustedIssuerRequest, CreateOfferRequest, CredentialStatus, GetCredentialRequest,
    IssueCustodialRequest, ListCredentialsRequest, RemoveTrustedIssuerRequest,
    RevokeCredentialRequest, VerifyCredentialRequest, VerifyCredentialResponse,
    verifier_service_client::VerifierServiceClient,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{channel, connect, create_wallet, eventually, start};
use serde_json::{Value, json};
use tonic::Code;

const RESIGN_MS: &str = "300";

/// The names of the checks that failed, presentation's first.
fn failed(r: &VerifyCredentialResponse) -> Vec<String> {
    r.presentation_checks
        .iter()
        .chain(r.credentials.iter().flat_map(|c| &c.checks))
        .filter(|c| !c.valid)
        .map(|c| c.name.clone())
        .collect()
}

/// The messages of one check of the first credential.
fn messages(r: &VerifyCredentialResponse, name: &str) -> String {
    r.credentials[0]
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} check in {r:#?}"))
        .messages
        .join("; ")
}

async fn verifier(
    a: &agentd::harness::ProcessAgent,
) -> VerifierServiceClient<tonic::transport::Channel> {
    VerifierServiceClient::new(channel(a).await)
}

async fn verify(
    v: &VerifierServiceClient<tonic::transport::Channel>,
    jwt: &str,
) -> VerifyCredentialResponse {
    v.clone()
        .verify_credential(VerifyCredentialRequest {
            wallet_id: String::new(),
            jwt: jwt.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Offers `offer` from `ic` (automatic issuance), accepts it on `hc`, and
/// returns the held credential.
async fn issue(ic: &Clients, hc: &Clients, offer: CreateOfferRequest) -> proto::Credential {
    let offered = ic
        .issuance
        .clone()
        .create_offer(CreateOfferRequest {
            automatic_issuance: true,
            ..offer
        })
        .await
        .unwrap()
        .into_inner();
    common::accept_until_held(hc, &offered.thid).await
}

async fn held(hc: &Clients, id: &str, check_status: bool) -> proto::Credential {
    hc.holder
        .clone()
        .get_credential(GetCredentialRequest {
            credential_id: id.into(),
            check_status,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

fn offer(connection: &str, schema: &str) -> CreateOfferRequest {
    CreateOfferRequest {
        connection_id: connection.into(),
        claims_json: json!({"name": "Alice", "level": 3}).to_string(),
        types: vec!["MembershipCredential".into()],
        schema_id: schema.into(),
        validity_period_secs: 3600,
        ..Default::default()
    }
}

/// Serves two JSON Schemas on loopback: /good.json (which the offered
/// claims meet) and /age.json (which they do not); returns the base URL.
async fn schema_server() -> String {
    use axum::routing::get;
    let good = json!({
        "type": "object",
        "required": ["name", "level"],
        "properties": { "name": {"type": "string", "pattern": "^[A-Z]"}, "level": {"type": "integer"} },
    });
    let age = json!({ "type": "object", "required": ["age"] });
    let app = axum::Router::new()
        .route("/good.json", get(move || async move { good.to_string() }))
        .route("/age.json", get(move || async move { age.to_string() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A JWT with the same header and signature and `edit` applied to the payload.
fn tampered(jwt: &str, edit: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    edit(&mut payload);
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    )
}

/// An Ed25519 did:key of the test's own, and JWTs it signs.
struct Signer {
    key: ed25519_dalek::SigningKey,
    did: String,
}

impl Signer {
    fn new(seed: u8) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let did = agentd::did::did_key(
            agentd::store::KeyType::Ed25519,
            key.verifying_key().as_bytes(),
        );
        Signer { key, did }
    }

    fn sign(&self, payload: &Value) -> String {
        use ed25519_dalek::Signer as _;
        let fragment = self.did.strip_prefix("did:key:").unwrap();
        let header =
            json!({"alg": "EdDSA", "typ": "JWT", "kid": format!("{}#{fragment}", self.did)});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let sig = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_verify_revoke_across_two_daemons() {
    let env = [("AGENTD_STATUS_RESIGN_INTERVAL_MS", RESIGN_MS)];
    let issuer = start("issuer", &env).await;
    let holder = start("holder", &env).await;
    let schemas = schema_server().await;
    let (ic, hc, ci) = connect(&issuer, &holder).await;
    let credential = issue(&ic, &hc, offer(&ci, &format!("{schemas}/good.json"))).await;
    let (iv, hv) = (verifier(&issuer).await, verifier(&holder).await);

    // Valid on both sides: the holder's daemon fetches the issuer's list.
    for v in [&hv, &iv] {
        let r = verify(v, &credential.jwt).await;
        assert!(r.valid, "{r:#?}");
        let c = &r.credentials[0];
        assert_eq!(
            (c.id.as_str(), c.issuer.as_str()),
            (credential.id.as_str(), credential.issuer.as_str())
        );
        let names: Vec<&str> = c.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "SignatureVerification",
                "IssuerIsSigner",
                "ValidityPeriod",
                "CredentialStatus",
                "SchemaConformance",
                "TrustRegistryMembership"
            ]
        );
        let applicable: Vec<bool> = c.checks.iter().map(|c| c.applicable).collect();
        assert_eq!(applicable, [true, true, true, true, true, false]);
    }

    // A changed claim breaks only the signature.
    let forged = tampered(&credential.jwt, |p| {
        p["vc"]["credentialSubject"]["level"] = json!(9)
    });
    let r = verify(&hv, &forged).await;
    assert_eq!(failed(&r), ["SignatureVerification"], "{r:#?}");

    // A schema the claims do not meet fails only SchemaConformance.
    let second = issue(&ic, &hc, offer(&ci, &format!("{schemas}/age.json"))).await;
    let r = verify(&hv, &second.jwt).await;
    assert_eq!(failed(&r), ["SchemaConformance"], "{r:#?}");
    assert!(messages(&r, "SchemaConformance").contains("age"), "{r:#?}");

    // Trusted issuers: someone else only, then the issuer too.
    let mut trust = hv.clone();
    let other = Signer::new(7).did;
    for did in [&other, &credential.issuer] {
        trust
            .add_trusted_issuer(AddTrustedIssuerRequest {
                did: did.clone(),
                label: "test".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let r = verify(&hv, &credential.jwt).await;
        if did == &other {
            assert_eq!(failed(&r), ["TrustRegistryMembership"], "{r:#?}");
        } else {
            assert!(r.valid, "{r:#?}");
        }
    }
    for did in [&other, &credential.issuer] {
        trust
            .remove_trusted_issuer(RemoveTrustedIssuerRequest {
                did: did.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    // Revoked: our own verifier sees it at once (the committed bit)…
    ic.issuance
        .clone()
        .revoke_credential(RevokeCredentialRequest {
            id: credential.id.clone(),
            reason: "key compromised".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = verify(&iv, &credential.jwt).await;
    assert_eq!(failed(&r), ["CredentialStatus"], "{r:#?}");
    assert!(
        messages(&r, "CredentialStatus").contains("revoked"),
        "{r:#?}"
    );
    // …the holder's daemon once the list is re-signed and its cached copy
    // (max-age 1 s) is stale.
    let r = eventually(10, "the holder's verifier to see the revocation", || {
        let hv = hv.clone();
        let jwt = credential.jwt.clone();
        async move { Some(verify(&hv, &jwt).await).filter(|r| !r.valid) }
    })
    .await;
    assert_eq!(failed(&r), ["CredentialStatus"], "{r:#?}");

    // The holder's credential shows it, with the issuer's reason.
    let revoked = eventually(10, "the holder's credential to show revoked", || async {
        Some(held(&hc, &credential.id, false).await)
            .filter(|c| c.status == CredentialStatus::Revoked as i32)
    })
    .await;
    assert_eq!(revoked.revocation_reason, "key compromised");
    let listed = |status: CredentialStatus| {
        let mut h = hc.holder.clone();
        async move {
            h.list_credentials(ListCredentialsRequest {
                status: status as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .credentials
            .into_iter()
            .map(|c| c.id)
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(CredentialStatus::Revoked).await,
        vec![credential.id.clone()]
    );
    assert_eq!(
        listed(CredentialStatus::Active).await,
        vec![second.id.clone()]
    );

    // A presentation of the revoked credential, signed by someone we know
    // only by did:key: the presentation verifies, its credential does not.
    let presenter = Signer::new(9);
    let vp = presenter.sign(&json!({
        "iss": presenter.did,
        "nbf": agentd::now_secs(),
        "vp": {
            "@context": ["https://www.w3.org/2018/credentials/v1"],
            "type": ["VerifiablePresentation"],
            "verifiableCredential": [credential.jwt, second.jwt],
        },
    }));
    let r = verify(&hv, &vp).await;
    assert_eq!(r.holder, presenter.did);
    assert!(r.presentation_checks.iter().all(|c| c.valid), "{r:#?}");
    assert_eq!(r.credentials.len(), 2);
    assert_eq!(
        failed(&r),
        ["CredentialStatus", "SchemaConformance"],
        "{r:#?}"
    );
    assert!(!r.valid);

    // Undecodable input is an error, not a failed check.
    for bad in [
        "not a jwt",
        "e30.e30",
        &presenter.sign(&json!({"iss": "x"})),
    ] {
        let e = hv
            .clone()
            .verify_credential(VerifyCredentialRequest {
                jwt: bad.to_string(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_learns_a_revocation_from_the_status_list() {
    // The issuer's revocation notice waits a minute after its first failed
    // send, so the holder can learn it only from the list.
    let issuer = start(
        "issuer",
        &[
            ("AGENTD_STATUS_RESIGN_INTERVAL_MS", RESIGN_MS),
            ("AGENTD_OUTBOX_BASE_BACKOFF_MS", "60000"),
            ("AGENTD_OUTBOX_MAX_BACKOFF_MS", "60000"),
        ],
    )
    .await;
    let mut holder = start("holder", &[]).await;
    let (ic, hc, ci) = connect(&issuer, &holder).await;
    let first = issue(&ic, &hc, offer(&ci, "")).await;
    let second = issue(&ic, &hc, offer(&ci, "")).await;

    let checked = held(&hc, &first.id, true).await;
    assert_eq!(checked.status, CredentialStatus::Active as i32);
    assert!(checked.status_checked_at_ms > 0);
    assert_eq!(checked.status_check_error, "");

    holder.kill().await.unwrap();
    ic.issuance
        .clone()
        .revoke_credential(RevokeCredentialRequest {
            id: first.id.clone(),
            reason: "left the club".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    holder.restart().await.unwrap();
    let hc = holder.clients().await.unwrap();
    assert_eq!(
        held(&hc, &first.id, false).await.status,
        CredentialStatus::Active as i32
    );
    let refreshed = hc
        .holder
        .clone()
        .refresh_status(GetCredentialRequest {
            credential_id: first.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        refreshed.status,
        CredentialStatus::Revoked as i32,
        "{refreshed:#?}"
    );
    assert_eq!(
        refreshed.revocation_reason,
        "the issuer's status list marks it revoked"
    );
    // Kept: a plain read shows it without checking again.
    assert_eq!(
        held(&hc, &first.id, false).await.status,
        CredentialStatus::Revoked as i32
    );

    // With the issuer gone the list cannot be read: the status stays, and why is said.
    drop(ic);
    drop(issuer);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let unreachable = held(&hc, &second.id, true).await;
    assert_eq!(unreachable.status, CredentialStatus::Active as i32);
    assert!(
        unreachable.status_check_error.contains("fetching"),
        "{}",
        unreachable.status_check_error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_and_an_unreachable_foreign_list_each_fail_one_check() {
    let d = start(
        "verifier",
        &[
            ("AGENTD_VERIFICATION_CLOCK_SKEW_SECS", "0"),
            ("AGENTD_VERIFICATION_FETCH_TIMEOUT_MS", "1000"),
        ],
    )
    .await;
    let v = verifier(&d).await;
    let c = d.clients().await.unwrap();
    create_wallet(&c, "bob").await;

    // Expired: only ValidityPeriod; the held copy shows expired.
    let issued = c
        .issuance
        .clone()
        .issue_custodial(IssueCustodialRequest {
            holder_wallet_id: "bob".into(),
            claims_json: r#"{"name":"Bob"}"#.into(),
            validity_period_secs: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .credential
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = verify(&v, &issued.jwt).await;
    assert_eq!(failed(&r), ["ValidityPeriod"], "{r:#?}");
    assert!(messages(&r, "ValidityPeriod").contains("expired"), "{r:#?}");
    let bob = c
        .holder
        .clone()
        .get_credential(GetCredentialRequest {
            wallet_id: "bob".into(),
            credential_id: issued.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bob.status, CredentialStatus::Expired as i32);

    // A list whose server takes the connection and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/status/1", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let issuer = Signer::new(3);
    let now = agentd::now_secs();
    let jwt = issuer.sign(&json!({
        "iss": issuer.did,
        "sub": "did:example:holder",
        "nbf": now,
        "exp": now + 600,
        "jti": "urn:uuid:foreign",
        "vc": {
            "@context": ["https://www.w3.org/2018/credentials/v1"],
            "type": ["VerifiableCredential"],
            "issuer": issuer.did,
            "credentialSubject": {"id": "did:example:holder", "name": "Carol"},
            "credentialStatus": {
                "id": format!("{url}#5"),
                "type": "BitstringStatusListEntry",
                "statusPurpose": "revocation",
                "statusListIndex": "5",
                "statusListCredential": url,
            },
        },
    }));
    let started = std::time::Instant::now();
    let r = verify(&v, &jwt).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(failed(&r), ["CredentialStatus"], "{r:#?}");
    assert!(
        messages(&r, "CredentialStatus").contains("timed out after 1000 ms"),
        "{r:#?}"
    );
    // The claimed issuer is not the signer: only IssuerIsSigner.
    let impostor = Signer::new(4);
    let mut claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    claims["vc"]
        .as_object_mut()
        .unwrap()
        .remove("credentialStatus");
    claims["vc"]["issuer"] = json!(impostor.did);
    let r = verify(&v, &issuer.sign(&claims)).await;
    assert_eq!(failed(&r), ["IssuerIsSigner"], "{r:#?}");
}
