//! Crash points, tested deterministically: for each named point of the
//! intake, the inbox worker, control-plane actions, the outbox round and the
//! flush (see `src/crashpoint.rs`), one issuance flow runs between two
//! daemons while one of them is armed to die (SIGKILL) the Nth time it
//! reaches the point. The test restarts it, goes on driving the flow as a
//! client would (retrying with the same idempotency key), and checks the
//! same end state every time: one record on each side, one credential, the
//! issuer's record names that credential, and the holder's ack arrived.

mod common;

use std::time::{Duration, Instant};

use agentd::harness::{Clients, ProcessAgent};
use agentd::rpc::proto::{
    AcceptOfferRequest, CreateOfferRequest, CredentialRecord, ListCredentialsRequest,
    ListRecordsRequest, RecordState, Role,
};
use common::{connect, start};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    Issuer,
    Holder,
}

/// All records of `role` in the default wallet, or None while the daemon is down.
async fn records(agent: &ProcessAgent, role: Role) -> Option<Vec<CredentialRecord>> {
    let mut c = Clients::connect(&agent.grpc.to_string()).await.ok()?;
    let page = c
        .issuance
        .list_records(ListRecordsRequest {
            role: role as i32,
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner();
    Some(page.records)
}

/// Runs one flow with `victim` armed at `point` (`name:N`); `inline`
/// false sends every inbound message through the inbox worker.
async fn flow_survives(point: &str, victim: Side, inline: bool) {
    let started = Instant::now();
    let inline = if inline { "true" } else { "false" };
    let env = [("AGENTD_DIDCOMM_HANDLE_INLINE", inline)];
    let mut issuer = start("issuer", &env).await;
    let mut holder = start("holder", &env).await;
    let (_, _, connection) = connect(&issuer, &holder).await;
    // Armed after connecting, so the hits counted are the flow's own.
    let armed = match victim {
        Side::Issuer => &mut issuer,
        Side::Holder => &mut holder,
    };
    armed.set_env("AGENTD_CRASHPOINT", Some(point));
    // A point reached while starting (the first flush) kills the start.
    let mut crashed = false;
    if armed.restart().await.is_err() {
        assert_crashed_at(armed, point);
        crashed = true;
        armed.set_env("AGENTD_CRASHPOINT", None);
        armed.restart().await.unwrap();
    }

    let mut offered = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "{point} on the {victim:?}: the flow did not finish (crashed: {crashed})\n\
             issuer: {:?}\nholder: {:?}",
            records(&issuer, Role::Issuer).await,
            records(&holder, Role::Holder).await,
        );
        for agent in [&mut issuer, &mut holder] {
            if agent.exited().unwrap().is_some() {
                assert_crashed_at(agent, point);
                assert!(!crashed, "{point} fired twice");
                crashed = true;
                agent.set_env("AGENTD_CRASHPOINT", None);
                agent.restart().await.unwrap();
            }
        }
        // The issuer's operator: offer until the call is answered.
        if !offered && let Ok(mut c) = issuer.clients().await {
            offered = c
                .issuance
                .create_offer(CreateOfferRequest {
                    connection_id: connection.clone(),
                    claims_json: r#"{"name":"Alice"}"#.into(),
                    types: vec!["CrashTestCredential".into()],
                    automatic_issuance: true,
                    idempotency_key: "the-flow".into(),
                    ..Default::default()
                })
                .await
                .is_ok();
        }
        // The holder's operator: accept whatever offer waits.
        if let (Some(offers), Ok(mut c)) =
            (records(&holder, Role::Holder).await, holder.clients().await)
        {
            for r in offers
                .iter()
                .filter(|r| r.state == RecordState::OfferReceived as i32)
            {
                let _ = c
                    .holder
                    .accept_offer(AcceptOfferRequest {
                        record_id: r.id.clone(),
                        ..Default::default()
                    })
                    .await;
            }
        }
        let (Some(i), Some(h)) = (
            records(&issuer, Role::Issuer).await,
            records(&holder, Role::Holder).await,
        ) else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let done = i
            .iter()
            .any(|r| r.state == RecordState::CredentialSent as i32 && r.ack_received)
            && h.iter()
                .any(|r| r.state == RecordState::CredentialReceived as i32);
        if done && crashed {
            // Let anything still in flight land before judging.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let i = records(&issuer, Role::Issuer).await.unwrap();
            let h = records(&holder, Role::Holder).await.unwrap();
            let credentials = holder
                .clients()
                .await
                .unwrap()
                .holder
                .list_credentials(ListCredentialsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .credentials;
            assert_eq!(i.len(), 1, "{point}: one issuer record: {i:?}");
            assert_eq!(h.len(), 1, "{point}: one holder record: {h:?}");
            assert_eq!(credentials.len(), 1, "{point}: one credential");
            assert_eq!(i[0].thid, h[0].thid);
            assert_eq!(
                i[0].credential_id, credentials[0].id,
                "{point}: the issuer knows the credential it issued"
            );
            assert_eq!(h[0].credential_id, credentials[0].id);
            println!(
                "{point} on the {victim:?} (inline {inline}): crashed, restarted, one flow, {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        if done {
            panic!("{point} on the {victim:?}: the flow finished without reaching the point");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The agent's log says it died at `point`, and not for another reason.
fn assert_crashed_at(agent: &ProcessAgent, point: &str) {
    let name = point.split(':').next().unwrap();
    let log = agent.log();
    assert!(
        log.contains(&format!("crashpoint {name} reached")),
        "{} exited, but not at {point}; its log ends:\n{}",
        agent.name,
        log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
}

macro_rules! crash_points {
    ($($test:ident: $point:literal on $side:ident, inline $inline:literal;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                flow_survives($point, Side::$side, $inline).await;
            }
        )*
    };
}

crash_points! {
    issuer_action_after_commit: "action.after_commit:1" on Issuer, inline true;
    issuer_action_after_flush: "action.after_flush:1" on Issuer, inline true;
    holder_action_after_commit: "action.after_commit:1" on Holder, inline true;
    holder_action_after_flush: "action.after_flush:1" on Holder, inline true;

    issuer_intake_request_after_commit: "intake.after_commit:1" on Issuer, inline true;
    issuer_intake_request_after_flush: "intake.after_flush:1" on Issuer, inline true;
    issuer_intake_ack_after_commit: "intake.after_commit:2" on Issuer, inline true;
    issuer_intake_ack_after_flush: "intake.after_flush:2" on Issuer, inline true;
    holder_intake_offer_after_commit: "intake.after_commit:1" on Holder, inline true;
    holder_intake_offer_after_flush: "intake.after_flush:1" on Holder, inline true;
    holder_intake_credential_after_commit: "intake.after_commit:2" on Holder, inline true;
    holder_intake_credential_after_flush: "intake.after_flush:2" on Holder, inline true;

    issuer_inbox_request_after_commit: "inbox.after_commit:1" on Issuer, inline false;
    issuer_inbox_request_after_flush: "inbox.after_flush:1" on Issuer, inline false;
    issuer_inbox_ack_after_commit: "inbox.after_commit:2" on Issuer, inline false;
    issuer_inbox_ack_after_flush: "inbox.after_flush:2" on Issuer, inline false;
    holder_inbox_offer_after_commit: "inbox.after_commit:1" on Holder, inline false;
    holder_inbox_offer_after_flush: "inbox.after_flush:1" on Holder, inline false;
    holder_inbox_credential_after_commit: "inbox.after_commit:2" on Holder, inline false;
    holder_inbox_credential_after_flush: "inbox.after_flush:2" on Holder, inline false;

    issuer_outbox_offer_before_send: "outbox.before_send:1" on Issuer, inline true;
    issuer_outbox_offer_after_send: "outbox.after_send:1" on Issuer, inline true;
    issuer_outbox_offer_after_record: "outbox.after_record:1" on Issuer, inline true;
    issuer_outbox_credential_before_send: "outbox.before_send:2" on Issuer, inline true;
    issuer_outbox_credential_after_send: "outbox.after_send:2" on Issuer, inline true;
    holder_outbox_request_before_send: "outbox.before_send:1" on Holder, inline true;
    holder_outbox_request_after_send: "outbox.after_send:1" on Holder, inline true;
    holder_outbox_request_after_record: "outbox.after_record:1" on Holder, inline true;
    holder_outbox_ack_before_send: "outbox.before_send:2" on Holder, inline true;
    holder_outbox_ack_after_send: "outbox.after_send:2" on Holder, inline true;

    issuer_flush_1: "store.before_flush:1" on Issuer, inline true;
    issuer_flush_2: "store.before_flush:2" on Issuer, inline true;
    issuer_flush_3: "store.before_flush:3" on Issuer, inline true;
    holder_flush_1: "store.before_flush:1" on Holder, inline true;
    holder_flush_2: "store.before_flush:2" on Holder, inline true;
    holder_flush_3: "store.before_flush:3" on Holder, inline true;
}
