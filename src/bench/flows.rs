//! Drives complete issue-credential flows between an issuer and a holder
//! agent over their gRPC control planes, `concurrency` flows at a time. A
//! flow is offer → request → credential → ack: the issuer offers with
//! automatic issuance, a holder operator (this module) accepts each offer
//! as its event arrives, and the flow ends when the issuer's event stream
//! says the holder's ack arrived.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::harness::{Clients, HarnessError, Result};
use crate::rpc::proto;

/// One run's raw figures.
pub struct Run {
    pub flows: usize,
    pub wall: Duration,
    /// Each flow's latency, sorted.
    pub latencies: Vec<Duration>,
}

/// Where a flow's completion goes: to its waiting driver, or kept until the
/// driver asks (the ack can be seen before CreateOffer's answer arrives).
enum Slot {
    Waiting(oneshot::Sender<Instant>),
    Done(Instant),
}

type Slots = Arc<Mutex<HashMap<String, Slot>>>;

fn complete(slots: &Slots, thid: String, at: Instant) {
    let mut slots = slots.lock().expect("slots");
    match slots.remove(&thid) {
        Some(Slot::Waiting(tx)) => {
            let _ = tx.send(at);
        }
        _ => {
            slots.insert(thid, Slot::Done(at));
        }
    }
}

async fn finished(slots: &Slots, thid: String) -> Option<Instant> {
    let rx = {
        let mut slots = slots.lock().expect("slots");
        if let Some(Slot::Done(at)) = slots.remove(&thid) {
            return Some(at);
        }
        let (tx, rx) = oneshot::channel();
        slots.insert(thid, Slot::Waiting(tx));
        rx
    };
    rx.await.ok()
}

/// Runs `flows` flows, `concurrency` at a time, on the active connection
/// `connection` (the issuer's id for it).
pub async fn run(
    issuer: &Clients,
    holder: &Clients,
    connection: &str,
    flows: usize,
    concurrency: usize,
    within: Duration,
) -> Result<Run> {
    let slots: Slots = Default::default();
    // Both subscriptions are live once their calls return, before the first offer.
    let offers = subscribe(
        holder,
        proto::Role::Holder,
        proto::RecordState::OfferReceived,
    )
    .await?;
    let acks = subscribe(
        issuer,
        proto::Role::Issuer,
        proto::RecordState::CredentialSent,
    )
    .await?;
    let mut background = JoinSet::new();
    background.spawn(accept_offers(holder.clone(), offers));
    background.spawn(watch_acks(acks, slots.clone()));

    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut drivers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (mut issuer, slots, next, connection) = (
            issuer.clone(),
            slots.clone(),
            next.clone(),
            connection.to_string(),
        );
        drivers.spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < flows {
                let began = Instant::now();
                let offer = issuer
                    .issuance
                    .create_offer(proto::CreateOfferRequest {
                        connection_id: connection.clone(),
                        claims_json: json!({"name": "Alice Example", "degree": "BSc"}).to_string(),
                        types: vec!["BenchCredential".into()],
                        automatic_issuance: true,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                let done = finished(&slots, offer.thid.clone()).await.ok_or_else(|| {
                    HarnessError::Timeout(format!("flow {} never completed", offer.thid))
                })?;
                latencies.push(done - began);
            }
            Ok::<_, HarnessError>(latencies)
        });
    }
    let mut latencies = Vec::with_capacity(flows);
    let collect = async {
        while let Some(r) = drivers.join_next().await {
            latencies.extend(r.expect("driver panicked")?);
        }
        Ok::<_, HarnessError>(())
    };
    let outcome = tokio::time::timeout(within, collect).await;
    let wall = start.elapsed();
    background.abort_all();
    outcome.map_err(|_| {
        HarnessError::Timeout(format!(
            "{flows} flows at concurrency {concurrency} within {within:?}"
        ))
    })??;
    latencies.sort();
    Ok(Run {
        flows,
        wall,
        latencies,
    })
}

type Events = tonic::Streaming<proto::RecordEvent>;

async fn subscribe(c: &Clients, role: proto::Role, state: proto::RecordState) -> Result<Events> {
    let request = proto::SubscribeRequest {
        role: role as i32,
        state: state as i32,
        ..Default::default()
    };
    Ok(c.events.clone().subscribe(request).await?.into_inner())
}

/// The holder's operator: accepts every offer as it arrives.
async fn accept_offers(holder: Clients, mut offers: Events) -> Result<()> {
    while let Some(e) = offers.message().await? {
        let mut h = holder.holder.clone();
        tokio::spawn(async move {
            let _ = h
                .accept_offer(proto::AcceptOfferRequest {
                    wallet_id: e.wallet_id,
                    record_id: e.record_id,
                    ..Default::default()
                })
                .await;
        });
    }
    Ok(())
}

/// Marks flows complete when the issuer records the holder's ack.
async fn watch_acks(mut acks: Events, slots: Slots) -> Result<()> {
    while let Some(e) = acks.message().await? {
        if e.ack_received {
            complete(&slots, e.thid, Instant::now());
        }
    }
    Ok(())
}
