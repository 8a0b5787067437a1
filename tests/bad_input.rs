//! Every kind of bad input gets a clear, typed refusal and stores nothing.

mod common;

use agentd::rpc::proto::{
    AcceptInvitationRequest, CreateInvitationRequest, ListDidsRequest,
    wallet_service_client::WalletServiceClient,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{CT, Outsider, count, post};
use serde_json::{Value, json};

/// Flips one character of a base64url field of the JWE.
fn tamper(jwe: &str, field: &str) -> String {
    let mut v: Value = serde_json::from_str(jwe).unwrap();
    let s = v[field].as_str().unwrap().to_string();
    let mut bytes = URL_SAFE_NO_PAD.decode(&s).unwrap();
    bytes[0] ^= 1;
    v[field] = Value::String(URL_SAFE_NO_PAD.encode(bytes));
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_envelopes_are_refused_and_store_nothing() {
    let mut d = common::start("bad-envelopes", &[]).await;
    let (ours, invitation, _) = common::open_invitation(&d).await;
    let outsider = Outsider::new();
    let ping = |id: &str, from: &str| {
        json!({
            "id": id, "type": "https://didcomm.org/trust-ping/2.0/ping",
            "from": from, "to": [ours], "pthid": invitation["id"],
            "body": {"response_requested": false},
        })
    };
    let good = outsider.pack(&ping("good-1", &outsider.did), &ours);

    let before = count(&mut d).await;

    let cases: Vec<(&str, String, String, u16, &str)> = vec![
        ("not JSON", CT.into(), "{not json".into(), 400, "not_json"),
        (
            "JSON nested 100 000 deep (within the body limit)",
            CT.into(),
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            400,
            "not_json",
        ),
        (
            "wrong content type",
            "application/json".into(),
            good.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "neither JWE nor JWS",
            CT.into(),
            "{\"a\":1}".into(),
            400,
            "malformed_envelope",
        ),
        (
            "tampered ciphertext",
            CT.into(),
            tamper(&good, "ciphertext"),
            400,
            "decryption_failed",
        ),
        (
            "tampered tag",
            CT.into(),
            tamper(&good, "tag"),
            400,
            "decryption_failed",
        ),
        (
            "for a DID not held here",
            CT.into(),
            outsider.pack(&ping("x-2", &outsider.did), &Outsider::new().did),
            404,
            "unknown_recipient",
        ),
        (
            "forged from",
            CT.into(),
            outsider.pack(&ping("x-3", &Outsider::new().did), &ours),
            400,
            "sender_mismatch",
        ),
        (
            "expired",
            CT.into(),
            outsider.pack(
                &{
                    let mut m = ping("x-4", &outsider.did);
                    m["expires_time"] = json!(1_000_000_000u64);
                    m
                },
                &ours,
            ),
            400,
            "expired",
        ),
    ];
    for (what, content_type, body, status, code) in cases {
        let (got, err) = post(&d, &content_type, body).await;
        assert_eq!(got, status, "{what}: {err}");
        assert_eq!(err["error"], code, "{what}: {err}");
        assert!(
            !err["message"].as_str().unwrap_or_default().is_empty(),
            "{what}"
        );
    }
    let (got, answer) = common::declared_post(d.didcomm, 1024 * 1024 + 1).await;
    assert_eq!(got, 413, "a body over max_body_bytes: {answer}");

    let after = count(&mut d).await;
    assert_eq!(after, before, "refused input stored nothing");

    // The untampered envelope is accepted, once: a replay changes nothing.
    assert_eq!(post(&d, CT, good.clone()).await.0, 202);
    let once = count(&mut d).await;
    assert!(once > before, "an accepted message is stored");
    assert_eq!(post(&d, CT, good).await.0, 202, "a replay is acknowledged");
    let twice = d.record_count().await.unwrap();
    assert_eq!(twice, once, "a replay stores nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_control_plane_calls_get_typed_errors() {
    let key = "test-api-key-0123456789";
    let d = common::start(
        "api-key",
        &[("AGENTD_GRPC_AUTH", "tokens"), ("AGENTD_API_KEY", key)],
    )
    .await;
    let channel = common::channel(&d).await;

    let err = d
        .clients()
        .await
        .unwrap()
        .dids
        .list_dids(ListDidsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert!(!err.message().contains(key));

    let auth = |mut r: tonic::Request<()>| {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        Ok(r)
    };
    let mut conns =
        agentd::rpc::proto::connection_service_client::ConnectionServiceClient::with_interceptor(
            channel.clone(),
            auth,
        );
    for url in ["not a url", "http://x/?_oob=@@@", "http://x/didcomm"] {
        let err = conns
            .accept_invitation(AcceptInvitationRequest {
                invitation_url: url.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{url}");
        assert!(
            err.message().contains("invitation URL does not parse"),
            "{}",
            err.message()
        );
    }
    let err = conns
        .create_invitation(CreateInvitationRequest {
            wallet_id: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(
        err.message().contains("wallet not found: nope"),
        "{}",
        err.message()
    );
    assert_eq!(
        err.metadata()
            .get("x-agentd-reason")
            .unwrap()
            .to_str()
            .unwrap(),
        "NOT_FOUND"
    );

    let mut wallets = WalletServiceClient::with_interceptor(channel, auth);
    let w = wallets
        .create_wallet(agentd::rpc::proto::CreateWalletRequest {
            id: "alice".into(),
            label: "Alice".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.id, "alice");
    let err = wallets
        .create_wallet(agentd::rpc::proto::CreateWalletRequest {
            id: "Bad Id!".into(),
            label: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let ids: Vec<String> = wallets
        .list_wallets(agentd::rpc::proto::ListWalletsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .wallets
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids, ["alice", "default"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_limit_gets_429_and_stores_nothing() {
    let mut d = common::start(
        "rate-limit",
        &[
            ("AGENTD_DIDCOMM_RATE_LIMIT_PER_SEC", "1"),
            ("AGENTD_DIDCOMM_RATE_LIMIT_BURST", "3"),
        ],
    )
    .await;
    let (ours, invitation, _) = common::open_invitation(&d).await;
    let outsider = Outsider::new();
    let ping = |id: &str| {
        let m = json!({
            "id": id, "type": "https://didcomm.org/trust-ping/2.0/ping",
            "from": outsider.did, "to": [ours], "pthid": invitation["id"],
            "body": {"response_requested": false},
        });
        outsider.pack(&m, &ours)
    };
    let before = count(&mut d).await;
    // The restart refilled the bucket: a burst of 3, then refusals.
    for i in 0..3 {
        assert_eq!(
            post(&d, CT, "{not json").await.0,
            400,
            "within the burst ({i})"
        );
    }
    let (status, err) = post(&d, CT, ping("p-1")).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (429, Some("rate_limited")),
        "{err}"
    );
    let after = d.record_count().await.unwrap();
    assert_eq!(after, before, "a rate-limited message is not stored");
}
