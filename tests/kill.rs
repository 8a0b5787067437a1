//! Nothing lost, nothing twice: 200 concurrent issuance flows between two
//! daemon processes while each is `kill -9`ed and restarted several times.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agentd::harness::Clients;
use agentd::rpc::proto::{
    AcceptOfferRequest, CreateOfferRequest, CredentialRecord, ListCredentialsRequest,
    ListRecordsRequest, PageRequest, RecordState, Role,
};
use common::{connect, start};

const FLOWS: usize = 200;

/// Clients for the agent at `addr`, or None while it is down.
async fn clients(addr: SocketAddr) -> Option<Clients> {
    Clients::connect(&addr.to_string()).await.ok()
}

/// Every record of `role` in the default wallet, or None if the daemon is down.
async fn records(addr: SocketAddr, role: Role) -> Option<Vec<CredentialRecord>> {
    let mut c = clients(addr).await?.issuance;
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_records(ListRecordsRequest {
                role: role as i32,
                page: Some(PageRequest {
                    page_size: 100,
                    page_token: token,
                }),
                ..Default::default()
            })
            .await
            .ok()?
            .into_inner();
        all.extend(page.records);
        if page.next_page_token.is_empty() {
            return Some(all);
        }
        token = page.next_page_token;
    }
}

/// The holder's operator: accepts every offer it sees, until told to stop.
/// Errors (the daemon is down, a record moved on) are retried next round.
async fn accept_offers(holder: SocketAddr, stop: tokio_util::sync::CancellationToken) {
    while !stop.is_cancelled() {
        if let (Some(offers), Some(c)) =
            (records(holder, Role::Holder).await, clients(holder).await)
        {
            let mut c = c.holder;
            for r in offers
                .iter()
                .filter(|r| r.state == RecordState::OfferReceived as i32)
            {
                let _ = c
                    .accept_offer(AcceptOfferRequest {
                        record_id: r.id.clone(),
                        ..Default::default()
                    })
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates offer `i` (idempotency key `flow-i`), retrying while the issuer is down.
async fn offer(issuer: SocketAddr, connection_id: &str, i: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_200_concurrent_flows_loses_nothing_and_issues_once() {
    let started = Instant::now();
    let env = [("AGENTD_OUTBOX_MAX_RETRIES", "30")];
    let mut issuer = start("issuer", &env).await;
    let mut holder = start("holder", &env).await;
    let (_, _, ci) = connect(&issuer, &holder).await;

    let stop = tokio_util::sync::CancellationToken::new();
    let acceptor = tokio::spawn(accept_offers(holder.grpc, stop.clone()));
    let offers = {
        let (addr, conn) = (issuer.grpc, ci.clone());
        tokio::spawn(async move {
            let all = (0..FLOWS).map(|i| {
                let conn = conn.clone();
                tokio::spawn(async move { offer(addr, &conn, i).await })
            });
            for t in all.collect::<Vec<_>>() {
                t.await.unwrap();
            }
        })
    };

    // Three crashes each, alternating, at random moments while flows run.
    let mut kills = 0;
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(rand::random_range(150..600))).await;
        let agent = if round % 2 == 0 {
            &mut issuer
        } else {
            &mut holder
        };
        agent.kill().await.unwrap();
        agent.restart().await.unwrap();
        kills += 1;
    }
    offers.await.unwrap();

    // Every flow ends with the holder's credential, however long the retries take.
    let deadline = Instant::now() + Duration::from_secs(120);
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
        if sent == FLOWS && received == FLOWS {
            break (i, h);
        }
        if Instant::now() > deadline {
            let states = |rs: &[CredentialRecord]| {
                let mut m = std::collections::BTreeMap::new();
                for r in rs {
                    *m.entry(RecordState::try_from(r.state).unwrap().as_str_name())
                        .or_insert(0) += 1;
                }
                m
            };
            panic!(
                "not finished after the deadline: issuer {:?}, holder {:?}",
                states(&i),
                states(&h)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.cancel();
    acceptor.await.unwrap();

    assert_eq!(
        issued.len(),
        FLOWS,
        "one issuer record per flow (idempotency keys)"
    );
    assert_eq!(held.len(), FLOWS, "one holder record per flow");
    let credentials = {
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
                break all;
            }
            token = page.next_page_token;
        }
    };
    let flows: HashSet<String> = credentials.iter().map(|c| c.claims_json.clone()).collect();
    let threads: HashSet<&str> = credentials.iter().map(|c| c.thid.as_str()).collect();
    assert_eq!(
        credentials.len(),
        FLOWS,
        "no duplicate and no missing credential"
    );
    assert_eq!(flows.len(), FLOWS);
    assert_eq!(threads.len(), FLOWS);
    let retried = issued
        .iter()
        .chain(&held)
        .filter(|r| !r.meta_last_failure.is_empty())
        .count();
    println!(
        "kill test: {FLOWS} flows, {kills} kill -9 + restart, {} issuer / {} holder records finished, {} credentials, {retried} records saw a failed delivery, {:.1} s",
        issued.len(),
        held.len(),
        credentials.len(),
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
