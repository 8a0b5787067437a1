//! `agentd backup` against a daemon running 200 flows, `agentd restore`
//! into a fresh data directory: the restored database is the issuer at one
//! point (its events, records and outbox agree), and the restored daemon
//! delivers what its outbox held.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use agentd::crypto::MasterKey;
use agentd::harness::ProcessAgent;
use agentd::rpc::proto::{
    CreateOfferRequest, ListOffersRequest, RecordEvent, RecordState, Role, SubscribeRequest,
};
use agentd::store::Store;
use common::{accept_offers, connect, eventually, records, start};
use tokio_stream::StreamExt;

const FLOWS: usize = 200;
const QUICK_RETRIES: [(&str, &str); 1] = [("AGENTD_OUTBOX_MAX_BACKOFF_MS", "1000")];

/// Runs `agentd args…`, returning its stdout; panics with its stderr on failure.
fn agentd(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agentd"))
        .args(args)
        .env_remove("AGENTD_MASTER_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "agentd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Offers with automatic issuance made on `connection`, all at once.
async fn offer(c: &agentd::harness::Clients, connection: &str, n: usize, tag: &str) {
    let mut offers = tokio::task::JoinSet::new();
    for i in 0..n {
        let mut c = c.issuance.clone();
        let (connection, tag) = (connection.to_string(), tag.to_string());
        offers.spawn(async move {
            c.create_offer(CreateOfferRequest {
                connection_id: connection,
                claims_json: format!(r#"{{"{tag}":{i}}}"#),
                automatic_issuance: true,
                ..Default::default()
            })
            .await
            .unwrap();
        });
    }
    while let Some(r) = offers.join_next().await {
        r.unwrap();
    }
}

/// How many of the issuer's records are `CredentialSent` with the holder's ack.
async fn finished(issuer: &ProcessAgent) -> usize {
    records(issuer.grpc, Role::Issuer)
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.state == RecordState::CredentialSent as i32 && r.ack_received)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_during_200_flows_restores_one_point_and_the_outbox_resumes() {
    let mut issuer = start("issuer", &QUICK_RETRIES).await;
    let holder = start("holder", &[]).await;
    let mut away = start("away", &[]).await;
    let (ic, _, to_holder) = connect(&issuer, &holder).await;
    let (_, _, to_away) = connect(&issuer, &away).await;
    // Offers to a holder that is down wait in the outbox at the snapshot.
    away.kill().await.unwrap();
    offer(&ic, &to_away, 3, "away").await;

    let events: Arc<Mutex<Vec<RecordEvent>>> = Default::default();
    let mut stream = ic
        .events
        .clone()
        .subscribe(SubscribeRequest {
            from_start: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let seen = events.clone();
    tokio::spawn(async move {
        while let Some(Ok(e)) = stream.next().await {
            seen.lock().unwrap().push(e);
        }
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let acceptor = tokio::spawn(accept_offers(holder.grpc, stop.clone()));
    let flows = {
        let ic = ic.clone();
        tokio::spawn(async move { offer(&ic, &to_holder, FLOWS, "flow").await })
    };
    // Midway: some flows complete, most still running.
    eventually(120, "the first flows to finish", || async {
        (finished(&issuer).await >= FLOWS / 10).then_some(())
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("issuer.backup");
    let grpc = issuer.grpc.to_string();
    let said = agentd(&["backup", "--grpc", &grpc, "--to", path(&file)]);
    assert!(said.starts_with("backup written to"), "{said}");

    flows.await.unwrap();
    eventually(300, "every flow to finish", || async {
        (finished(&issuer).await == FLOWS).then_some(())
    })
    .await;
    stop.cancel();
    acceptor.await.unwrap();

    let header = agentd::backup::verify(&file).unwrap();
    let at = header.event_seq;
    let events = events.lock().unwrap().clone();
    let before: Vec<&RecordEvent> = events.iter().filter(|e| e.seq <= at).collect();
    let completed_before = before
        .iter()
        .filter(|e| e.new_state == RecordState::CredentialSent as i32 && e.ack_received)
        .count();
    assert!(
        (FLOWS / 10..FLOWS).contains(&completed_before),
        "the snapshot (at event {at}, {completed_before} flows complete) was not taken while flows ran"
    );

    println!(
        "backup at event {at} of {}: {completed_before} of {FLOWS} flows complete, {} entries",
        events.len(),
        header.entries
    );
    // What was committed up to the snapshot's event is there, exactly.
    let master = MasterKey::load_existing(None, &issuer.dir().join("master.key")).unwrap();
    let look = dir.path().join("look/db");
    agentd::backup::restore(&file, &look, master).unwrap();
    let restored = Store::open(&look).unwrap();
    assert_eq!(restored.last_event_seq().unwrap(), at);
    let stored = restored.events_after(0, usize::MAX).unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|e| (e.seq, e.record_id.as_str()))
            .collect::<Vec<_>>(),
        before
            .iter()
            .map(|e| (e.seq, e.record_id.as_str()))
            .collect::<Vec<_>>()
    );
    // Records and events are of the same moment: each record is in the
    // state its last event left it in.
    let mut last = HashMap::new();
    for e in &stored {
        last.insert(e.record_id.as_str(), e.new_state);
    }
    for (id, state) in last {
        assert_eq!(
            restored.record("default", id).unwrap().state,
            state,
            "record {id}"
        );
    }
    assert!(
        restored.outbox_len() >= 3,
        "the offers to the absent holder"
    );

    // The same file restored by the CLI into the issuer's own (new) data
    // directory: the daemon starts on it and sends what its outbox held.
    issuer.stop().await.unwrap();
    std::fs::rename(issuer.dir().join("db"), issuer.dir().join("db.before")).unwrap();
    let said = agentd(&[
        "restore",
        "--from",
        path(&file),
        "--config",
        path(&issuer.config_path()),
    ]);
    assert!(
        said.starts_with(&format!("restored {}", header.entries)),
        "{said}"
    );
    issuer.restart().await.unwrap();
    away.restart().await.unwrap();
    let ac = away.clients().await.unwrap();
    eventually(60, "the restored issuer's queued offers to arrive", || {
        let mut h = ac.holder.clone();
        async move {
            let offers = h
                .list_offers(ListOffersRequest::default())
                .await
                .ok()?
                .into_inner()
                .records;
            (offers.len() == 3).then_some(())
        }
    })
    .await;
}
