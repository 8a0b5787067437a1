//! Nothing lost, nothing twice: 1,000 issuance flows between two daemon
//! processes while they are `kill -9`ed and restarted 100 times, and 2,000
//! flows while the issuer is down half the time.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agentd::harness::ProcessAgent;
use agentd::rpc::proto::{
    CreateOfferRequest, CredentialRecord, ListCredentialsRequest, PageRequest, RecordState, Role,
};
use common::{accept_offers, clients, connect, records, start};

/// Creates offer `i` (idempotency key `flow-i`), retrying while the issuer
/// is down, until the call is answered.
async fn offer(issuer: SocketAddr, connection_id: &str, i: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(mut c) = clients(issuer).await {
            let r = c
                .issuance
                .create_offer(CreateOfferRequest {
                    connection_id: connection_id.into(),
                    claims_json: format!(r#"{{"flow":{i}}}"#),
                    types: vec!["KillTestCredential".into()],
                    automatic_issuance: true,
                    idempotency_key: format!("flow-{i}"),
                    ..Default::default()
                })
                .await;
            if r.is_ok() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "offer {i} never accepted by the issuer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Offers flows `range` concurrently, each until answered.
fn offer_wave(
    issuer: SocketAddr,
    connection: &str,
    range: std::ops::Range<usize>,
) -> tokio::task::JoinSet<()> {
    let mut wave = tokio::task::JoinSet::new();
    for i in range {
        let conn = connection.to_string();
        wave.spawn(async move { offer(issuer, &conn, i).await });
    }
    wave
}

/// Waits until `flows` flows are finished on both sides, then checks that
/// each happened exactly once: one issuer record per idempotency key, one
/// holder record and one credential per thread, and the issuer's record
/// names the credential the holder holds. Returns (issuer, holder) records.
async fn all_finished_once(
    issuer: &ProcessAgent,
    holder: &ProcessAgent,
    flows: usize,
    within: Duration,
) -> (Vec<CredentialRecord>, Vec<CredentialRecord>) {
    let deadline = Instant::now() + within;
    let (issued, held) = loop {
        let i = records(issuer.grpc, Role::Issuer).await.unwrap_or_default();
        let h = records(holder.grpc, Role::Holder).await.unwrap_or_default();
        let sent = i
            .iter()
            .filter(|r| r.state == RecordState::CredentialSent as i32 && r.ack_received)
            .count();
        let received = h
            .iter()
            .filter(|r| r.state == RecordState::CredentialReceived as i32)
            .count();
        if sent >= flows && received >= flows {
            break (i, h);
        }
        fail_if_stuck(&i, &h, deadline, "not finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        issued.len(),
        flows,
        "one issuer record per flow (idempotency keys): {:?}",
        states(&issued)
    );
    assert_eq!(
        held.len(),
        flows,
        "one holder record per flow: {:?}",
        states(&held)
    );
    let credentials = all_credentials(holder).await;
    let flows_held: HashSet<String> = credentials.iter().map(|c| c.claims_json.clone()).collect();
    let threads: HashSet<&str> = credentials.iter().map(|c| c.thid.as_str()).collect();
    assert_eq!(
        credentials.len(),
        flows,
        "no duplicate and no missing credential"
    );
    assert_eq!(flows_held.len(), flows);
    assert_eq!(threads.len(), flows);
    let issued_ids: HashSet<&str> = issued.iter().map(|r| r.credential_id.as_str()).collect();
    for c in &credentials {
        assert!(
            issued_ids.contains(c.id.as_str()),
            "the issuer does not know it issued {} (thread {})",
            c.id,
            c.thid
        );
    }
    (issued, held)
}

fn states(rs: &[CredentialRecord]) -> std::collections::BTreeMap<&'static str, usize> {
    let mut m = std::collections::BTreeMap::new();
    for r in rs {
        *m.entry(RecordState::try_from(r.state).unwrap().as_str_name())
            .or_insert(0) += 1;
    }
    m
}

/// Panics, with the records by state, when a flow was refused (none here
/// may be: a refusal would never finish) or the deadline has passed.
fn fail_if_stuck(
    issued: &[CredentialRecord],
    held: &[CredentialRecord],
    deadline: Instant,
    what: &str,
) {
    let refused = issued
        .iter()
        .any(|r| r.state == RecordState::ProblemReportReceived as i32);
    if refused || Instant::now() > deadline {
        panic!(
            "{what} (a flow refused: {refused}); issuer records by state {:?}, holder's {:?}",
            states(issued),
            states(held)
        );
    }
}

async fn all_credentials(holder: &ProcessAgent) -> Vec<agentd::rpc::proto::Credential> {
    let mut c = holder.clients().await.unwrap().holder;
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_credentials(ListCredentialsRequest {
                page: Some(PageRequest {
                    page_size: 100,
                    page_token: token,
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.credentials);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

const FLOWS: usize = 1000;
const WAVES: usize = 10;
const KILLS: usize = 100;

/// Retries come quickly, so the test measures crashes, not backoff.
const QUICK_RETRIES: [(&str, &str); 1] = [("AGENTD_OUTBOX_MAX_BACKOFF_MS", "1000")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_1000_concurrent_flows_loses_nothing_and_does_nothing_twice() {
    let started = Instant::now();
    let mut issuer = start("issuer", &QUICK_RETRIES).await;
    let mut holder = start("holder", &QUICK_RETRIES).await;
    let (_, _, ci) = connect(&issuer, &holder).await;

    let stop = tokio_util::sync::CancellationToken::new();
    let acceptor = tokio::spawn(accept_offers(holder.grpc, stop.clone()));
    let per_wave = FLOWS / WAVES;
    let (mut kills, mut issuer_kills) = (0, 0);
    for wave in 0..WAVES {
        let mut offers = offer_wave(issuer.grpc, &ci, wave * per_wave..(wave + 1) * per_wave);
        // The first kill of a wave lands right after its offers start,
        // the rest at random moments while its flows run.
        for k in 0..KILLS / WAVES {
            let pause = if k == 0 { 0..30 } else { 20..300 };
            tokio::time::sleep(Duration::from_millis(rand::random_range(pause))).await;
            let aim_issuer = k == 0 || rand::random_bool(0.5);
            let agent = if aim_issuer { &mut issuer } else { &mut holder };
            agent.kill().await.unwrap();
            agent.restart().await.unwrap();
            kills += 1;
            issuer_kills += aim_issuer as usize;
        }
        while let Some(r) = offers.join_next().await {
            r.unwrap();
        }
    }
    let (issued, held) = all_finished_once(&issuer, &holder, FLOWS, Duration::from_secs(300)).await;
    stop.cancel();
    acceptor.await.unwrap();
    let retried = issued
        .iter()
        .chain(&held)
        .filter(|r| !r.meta_last_failure.is_empty())
        .count();
    println!(
        "kill test: {FLOWS} flows in {WAVES} waves, {kills} kill -9 + restart ({issuer_kills} of the issuer), \
         {} issuer / {} holder records finished, {FLOWS} credentials, {retried} records saw a failed delivery, {:.1} s",
        issued.len(),
        held.len(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_down_half_the_time_finishes_2000_flows() {
    const OUTAGE_FLOWS: usize = 2000;
    // All 2,000 offers are open at once on one connection: past the
    // default per-connection quota, which would refuse half of them.
    let env = [
        QUICK_RETRIES[0],
        ("AGENTD_ISSUANCE_MAX_OPEN_RECORDS_PER_CONNECTION", "5000"),
    ];
    let started = Instant::now();
    let mut issuer = start("issuer", &env).await;
    let holder = start("holder", &env).await;
    let (_, _, ci) = connect(&issuer, &holder).await;

    let stop = tokio_util::sync::CancellationToken::new();
    let acceptor = tokio::spawn(accept_offers(holder.grpc, stop.clone()));
    let mut offers = offer_wave(issuer.grpc, &ci, 0..OUTAGE_FLOWS);
    // Up 1.5 s, down 1.5 s, until every flow is finished on the holder.
    let mut outages = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let received = records(holder.grpc, Role::Holder)
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.state == RecordState::CredentialReceived as i32)
            .count();
        if received == OUTAGE_FLOWS {
            break;
        }
        fail_if_stuck(
            &records(issuer.grpc, Role::Issuer).await.unwrap_or_default(),
            &records(holder.grpc, Role::Holder).await.unwrap_or_default(),
            deadline,
            &format!("{received} of {OUTAGE_FLOWS} flows received"),
        );
        issuer.stop().await.unwrap();
        outages += 1;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        issuer.restart().await.unwrap();
    }
    while let Some(r) = offers.join_next().await {
        r.unwrap();
    }
    let (issued, held) =
        all_finished_once(&issuer, &holder, OUTAGE_FLOWS, Duration::from_secs(120)).await;
    stop.cancel();
    acceptor.await.unwrap();
    assert!(outages >= 2, "the issuer was down only {outages} times");
    let abandoned = issued
        .iter()
        .chain(&held)
        .filter(|r| r.state == RecordState::Abandoned as i32)
        .count();
    assert_eq!(abandoned, 0);
    println!(
        "outage test: {OUTAGE_FLOWS} flows, issuer down 1.5 s of every 3 s ({outages} outages), all finished once, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_down_for_several_retries_gets_everything_when_it_is_back() {
    let env = [("AGENTD_OUTBOX_MAX_RETRIES", "10")];
    let issuer = start("issuer", &env).await;
    let mut holder = start("holder", &env).await;
    let (_, _, ci) = connect(&issuer, &holder).await;
    holder.stop().await.unwrap();
    for i in 0..5 {
        offer(issuer.grpc, &ci, i).await;
    }
    // Backoff 100, 200, 400, 800 ms: wait for at least three failures.
    let failing = common::eventually(10, "three failed deliveries", || async {
        let rs = records(issuer.grpc, Role::Issuer).await?;
        rs.iter().all(|r| r.meta_retries <= 7).then_some(rs)
    })
    .await;
    for r in &failing {
        assert_eq!(r.state, RecordState::OfferPending as i32);
        assert!(!r.meta_last_failure.is_empty());
        assert!(r.meta_next_retry_ms > 0);
    }
    holder.restart().await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let acceptor = tokio::spawn(accept_offers(holder.grpc, stop.clone()));
    common::eventually(30, "all five credentials", || async {
        let h = records(holder.grpc, Role::Holder).await?;
        (h.len() == 5
            && h.iter()
                .all(|r| r.state == RecordState::CredentialReceived as i32))
        .then_some(())
    })
    .await;
    stop.cancel();
    acceptor.await.unwrap();
}
