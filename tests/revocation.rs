//! Revocation with W3C Bitstring Status Lists, on a real daemon: issue
//! (custodial: the holder wallet is told over DIDComm like any peer),
//! revoke, and check the served list independently (HTTP, base64url,
//! gunzip, bit test).

mod common;

use std::io::Read;
use std::time::Duration;

use agentd::rpc::proto::{
    GetCredentialRequest, GetRecordRequest, IssueCustodialRequest, RevokeCredentialRequest,
    RevokeCredentialsRequest, RevokeOutcome,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{create_wallet, eventually, http, start};
use serde_json::Value;
use tonic::Code;

const RESIGN_MS: u64 = 400;

fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("a compact JWS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Fetches a status list: (HTTP status, ETag, body).
async fn fetch(url: &str, if_none_match: Option<&str>) -> (u16, String, reqwest::Response) {
    let client = http().build().unwrap();
    let mut request = client.get(url);
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    let r = request.send().await.unwrap();
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), etag, r)
}

/// The set bits of a served list, decoded without agentd's code.
async fn set_bits(url: &str) -> (Vec<u32>, String) {
    let (status, etag, r) = fetch(url, None).await;
    assert_eq!(status, 200);
    assert_eq!(r.headers()["content-type"], "application/vc+jwt");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=1")
    );
    let jwt = r.text().await.unwrap();
    let vc = &payload(&jwt)["vc"];
    assert_eq!(vc["type"][1], "BitstringStatusListCredential");
    let subject = &vc["credentialSubject"];
    assert_eq!(subject["type"], "BitstringStatusList");
    assert_eq!(subject["statusPurpose"], "revocation");
    let encoded = subject["encodedList"].as_str().unwrap();
    let zipped = URL_SAFE_NO_PAD
        .decode(encoded.strip_prefix('u').expect("multibase base64url"))
        .unwrap();
    let mut bits = Vec::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_end(&mut bits)
        .unwrap();
    assert_eq!(bits.len(), 131_072 / 8);
    let set = (0..131_072u32)
        .filter(|i| bits[*i as usize / 8] & (0x80 >> (i % 8)) != 0)
        .collect();
    (set, etag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_notify_and_publish_the_bit() {
    let d = start(
        "revocation",
        &[("AGENTD_STATUS_RESIGN_INTERVAL_MS", &RESIGN_MS.to_string())],
    )
    .await;
    let c = d.clients().await.unwrap();
    create_wallet(&c, "alice").await;
    let mut api = c.issuance.clone();
    // (credential id, issuer record id, list URL, index)
    let mut issued = Vec::new();
    for _ in 0..6 {
        let r = api
            .issue_custodial(IssueCustodialRequest {
                holder_wallet_id: "alice".into(),
                claims_json: r#"{"name":"Alice"}"#.into(),
                types: vec!["MembershipCredential".into()],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let credential = r.credential.unwrap();
        let status = payload(&credential.jwt)["vc"]["credentialStatus"].clone();
        assert_eq!(status["type"], "BitstringStatusListEntry");
        assert_eq!(status["statusPurpose"], "revocation");
        let url = status["statusListCredential"].as_str().unwrap().to_string();
        assert!(
            url.starts_with(&format!("http://{}/status/", d.didcomm)),
            "{url}"
        );
        let index: u32 = status["statusListIndex"].as_str().unwrap().parse().unwrap();
        assert_eq!(status["id"], format!("{url}#{index}"));
        let record = r.issuer_record.unwrap();
        assert_eq!(record.status_list_credential, url);
        assert_eq!(record.status_list_index, index);
        issued.push((credential.id, record.id, url, index));
    }
    let url = issued[0].2.clone();
    assert!(issued.iter().all(|i| i.2 == url), "one list per issuer DID");

    // Nothing revoked yet.
    assert_eq!(set_bits(&url).await.0, Vec::<u32>::new());

    // Revoke the first; the record says who, when and why.
    let (credential_id, record_id, _, index) = issued[0].clone();
    let revoked = api
        .revoke_credential(RevokeCredentialRequest {
            id: credential_id.clone(),
            reason: "key compromised".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.id, record_id);
    assert!(revoked.revoked_at_ms > 0);
    assert_eq!(revoked.revocation_reason, "key compromised");

    // The holder is told in the thread.
    let holder = c.holder.clone();
    let held = eventually(10, "the holder's credential to show revoked", || {
        let mut holder = holder.clone();
        let id = credential_id.clone();
        async move {
            let c = holder
                .get_credential(GetCredentialRequest {
                    wallet_id: "alice".into(),
                    credential_id: id,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            c.revoked.then_some(c)
        }
    })
    .await;
    assert_eq!(held.revocation_reason, "key compromised");
    assert!(held.revoked_at_ms > 0);

    // The published list follows within the re-sign interval, exactly that bit.
    tokio::time::sleep(Duration::from_millis(RESIGN_MS + 100)).await;
    let (bits, etag) = set_bits(&url).await;
    assert_eq!(bits, vec![index]);

    // A second revoke is refused and changes nothing.
    let e = api
        .revoke_credential(RevokeCredentialRequest {
            id: record_id.clone(),
            reason: "again".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("already revoked"), "{e:?}");
    let after = api
        .get_record(GetRecordRequest {
            record_id: record_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, revoked);

    // Unchanged list: 304 to a matching If-None-Match.
    let (status, same, _) = fetch(&url, Some(&etag)).await;
    assert_eq!((status, same.as_str()), (304, etag.as_str()));

    // A burst: the other five in one call, with an unknown id and a repeat.
    let mut ids: Vec<String> = issued[1..].iter().map(|i| i.0.clone()).collect();
    ids.push("urn:uuid:nobody".into());
    ids.push(record_id.clone());
    let results = api
        .revoke_credentials(RevokeCredentialsRequest {
            ids: ids.clone(),
            reason: "membership ended".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let outcomes: Vec<i32> = results.iter().map(|r| r.outcome).collect();
    let mut expected = vec![RevokeOutcome::Revoked as i32; 5];
    expected.push(RevokeOutcome::NotFound as i32);
    expected.push(RevokeOutcome::AlreadyRevoked as i32);
    assert_eq!(outcomes, expected);
    assert_eq!(
        results.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        ids
    );

    // One fetch after the interval shows all six bits; a fetch right after
    // gets the same signed list (no re-sign per revocation).
    tokio::time::sleep(Duration::from_millis(RESIGN_MS + 100)).await;
    let (bits, burst_etag) = set_bits(&url).await;
    let mut all: Vec<u32> = issued.iter().map(|i| i.3).collect();
    all.sort();
    assert_eq!(bits, all);
    assert_ne!(burst_etag, etag);
    let (_, again) = set_bits(&url).await;
    assert_eq!(again, burst_etag);

    // An unknown list is a JSON 404.
    let unknown = url.rsplit_once('/').unwrap().0.to_string() + "/no-such-list";
    let (status, _, r) = fetch(&unknown, None).await;
    assert_eq!(status, 404);
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "not_found");
}

/// Issues `n` custodial credentials to wallet `alice` of `d` (made here),
/// 8 at a time: (credential id, list URL, index).
async fn issue_many(c: &agentd::harness::Clients, n: usize) -> Vec<(String, String, u32)> {
    create_wallet(c, "alice").await;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let mut api = c.issuance.clone();
        tasks.spawn(async move {
            let mut issued = Vec::new();
            for _ in (worker..n).step_by(8) {
                let r = api
                    .issue_custodial(IssueCustodialRequest {
                        holder_wallet_id: "alice".into(),
                        claims_json: r#"{"name":"Alice"}"#.into(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let record = r.issuer_record.unwrap();
                issued.push((
                    r.credential.unwrap().id,
                    record.status_list_credential,
                    record.status_list_index,
                ));
            }
            issued
        });
    }
    let mut all = Vec::new();
    while let Some(part) = tasks.join_next().await {
        all.extend(part.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_revocations_from_50_callers_set_exactly_those_bits() {
    const N: usize = 1000;
    const CALLERS: usize = 50;
    let d = start(
        "burst",
        &[("AGENTD_STATUS_RESIGN_INTERVAL_MS", &RESIGN_MS.to_string())],
    )
    .await;
    let c = d.clients().await.unwrap();
    // One more than revoked: a bit that must stay clear.
    let issued = issue_many(&c, N + 1).await;
    let url = issued[0].1.clone();
    assert!(issued.iter().all(|i| i.1 == url), "one list per issuer DID");
    let (spared, revoked) = issued.split_last().unwrap();

    // A reader polls the list throughout, noting each version it sees.
    let stop = tokio_util::sync::CancellationToken::new();
    let reader = {
        let (url, stop) = (url.clone(), stop.clone());
        tokio::spawn(async move {
            let mut versions: Vec<String> = Vec::new();
            while !stop.is_cancelled() {
                let (status, etag, _) = fetch(&url, None).await;
                assert_eq!(status, 200);
                if versions.last() != Some(&etag) {
                    versions.push(etag);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            versions
        })
    };
    let started = std::time::Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let mut api = c.issuance.clone();
        let mine: Vec<String> = revoked
            .iter()
            .skip(caller)
            .step_by(CALLERS)
            .map(|i| i.0.clone())
            .collect();
        callers.spawn(async move {
            for id in mine {
                api.revoke_credential(RevokeCredentialRequest {
                    id,
                    reason: "burst".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            }
        });
    }
    while let Some(done) = callers.join_next().await {
        done.unwrap();
    }
    let burst = started.elapsed();
    tokio::time::sleep(Duration::from_millis(RESIGN_MS + 100)).await;
    stop.cancel();
    let versions = reader.await.unwrap();

    let (bits, _) = set_bits(&url).await;
    let mut want: Vec<u32> = revoked.iter().map(|i| i.2).collect();
    want.sort();
    assert_eq!(bits.len(), N);
    assert_eq!(bits, want);
    assert!(!bits.contains(&spared.2));
    // At most one new version per re-sign interval (plus the one before
    // the burst and the one after it).
    let intervals = (burst.as_millis() as u64 + RESIGN_MS + 100).div_ceil(RESIGN_MS) as usize;
    eprintln!(
        "{N} revocations by {CALLERS} callers in {burst:?}: {} list versions seen",
        versions.len()
    );
    assert!(
        versions.len() <= intervals + 2,
        "{} versions in {burst:?} ({intervals} intervals)",
        versions.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_a_revocation_is_answered_loses_nothing() {
    let mut d = start(
        "crash",
        &[("AGENTD_STATUS_RESIGN_INTERVAL_MS", &RESIGN_MS.to_string())],
    )
    .await;
    let c = d.clients().await.unwrap();
    let issued = issue_many(&c, 4).await;
    let url = issued[0].1.clone();
    // Signed once before: the cached list shows nothing revoked.
    assert_eq!(set_bits(&url).await.0, Vec::<u32>::new());
    let mut api = c.issuance.clone();
    api.revoke_credential(RevokeCredentialRequest {
        id: issued[0].0.clone(),
        reason: "one".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    api.revoke_credentials(RevokeCredentialsRequest {
        ids: vec![issued[1].0.clone(), issued[2].0.clone()],
        reason: "two more".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    // Killed before the list was signed again.
    d.kill().await.unwrap();
    d.restart().await.unwrap();
    let (bits, _) = set_bits(&url).await;
    let mut want: Vec<u32> = issued[..3].iter().map(|i| i.2).collect();
    want.sort();
    assert_eq!(bits, want);
    let c = d.clients().await.unwrap();
    let again = c
        .issuance
        .clone()
        .revoke_credential(RevokeCredentialRequest {
            id: issued[1].0.clone(),
            reason: "again".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
}
