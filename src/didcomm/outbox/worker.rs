//! The outbox worker. New entries arrive from their writers once durable
//! ([`super::Handoff`]); a scan of the store (flushed before what it read leaves) finds the rest:
//! at start, when a retry falls due, and every `SAFETY_SCAN` for entries
//! whose writer could not hand them over. At most `outbox.per_destination`
//! sends are in flight per destination, so a slow or dead endpoint holds up
//! only its own messages. Outcomes are recorded in batches (one transaction
//! for those within `LINGER`) and published with the next flush.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::super::Transport;
use super::deliver::{Route, deliver, route};
use super::{Outcome, settle};
use crate::after::After;
use crate::error::Result;
use crate::store::{OutboxEntry, StoreTx};

/// How many due entries one scan reads.
const SCAN: usize = 512;
/// Scans at least this often, for entries nobody handed over.
const SAFETY_SCAN: Duration = Duration::from_secs(2);
/// Sends in flight at once, over all destinations.
const MAX_IN_FLIGHT: usize = 256;
/// Entries waiting for a free slot in memory; past it they wait in the
/// store for a scan.
const MAX_BACKLOG: usize = 10_000;
/// Untracked outcomes are recorded together: once this many wait, or the
/// oldest has waited `LINGER` (see `Worker::take_batch`).
const RECORD_BATCH: usize = 64;
const LINGER: Duration = Duration::from_millis(20);

/// Delivers entries until shutdown, then gives sends in flight a moment
/// to finish (the rest are sent again after a restart).
pub async fn run(transport: Transport, shutdown: CancellationToken) {
    let core = &transport.core;
    let worker = Worker::default();
    let recorder = tokio::spawn(record_outcomes(transport.clone(), worker.clone()));
    let mut sends = JoinSet::new();
    let mut backlog = VecDeque::new();
    let mut next_scan = Instant::now();
    while !shutdown.is_cancelled() {
        let handed = core.outbox.wake.notified();
        let freed = worker.loop_wake.notified();
        backlog.extend(core.outbox.take());
        if Instant::now() >= next_scan {
            backlog.extend(scan(&transport, &worker).await);
            next_scan = Instant::now() + SAFETY_SCAN;
        }
        if let Ok(Some(at)) = core.store.outbox_next_due_after(crate::now_ms()) {
            let until = Duration::from_millis((at - crate::now_ms()).max(0) as u64);
            next_scan = next_scan.min(Instant::now() + until);
        }
        if !backlog.is_empty() {
            crate::crashpoint!("outbox.before_send");
        }
        let per_destination = core.config.outbox.per_destination;
        let mut waiting = VecDeque::new();
        for entry in backlog.drain(..) {
            let route = route(&transport, &entry);
            let lane = route.lane();
            match worker.start(&entry.id, &lane, per_destination) {
                Start::Started => {
                    sends.spawn(send(transport.clone(), entry, route, lane, worker.clone()));
                }
                Start::Claimed => {}
                Start::Full if waiting.len() < MAX_BACKLOG => waiting.push_back(entry),
                Start::Full => {}
            }
        }
        backlog = waiting;
        while let Some(done) = sends.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "a delivery task failed");
            }
        }
        tokio::select! {
            _ = handed => {}
            _ = freed => {}
            _ = tokio::time::sleep_until(next_scan.into()) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    let drained = tokio::time::timeout(Duration::from_secs(2), async {
        while sends.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::info!(
            in_flight = sends.len(),
            "sends still in flight at shutdown; they go again after restart"
        );
    }
    worker.state.lock().expect("outbox worker").closing = true;
    worker.recorder.notify_one();
    let _ = recorder.await;
}

/// Due entries in the store that are not being sent. The read may see
/// entries whose transaction has committed but is not yet durable, and
/// nothing leaves before it is: a flush begun after the read covers
/// everything it saw. (Flushing first and reading after would let in an
/// entry committed between the two, which a crash could then undo after it
/// was sent.)
async fn scan(transport: &Transport, worker: &Worker) -> Vec<OutboxEntry> {
    let store = &transport.core.store;
    let found = match store.outbox_due(crate::now_ms(), SCAN, |id| worker.claimed(id)) {
        Ok(entries) => store.durable().await.map(|_| entries),
        Err(e) => Err(e),
    };
    found.unwrap_or_else(|e| {
        tracing::error!(error = %e, "reading the outbox failed");
        Vec::new()
    })
}

/// Delivers `entries` and records their outcomes, all at once, as the
/// worker would (tests drive the outbox with this).
#[cfg(test)]
pub(crate) async fn attempt(transport: &Transport, entries: Vec<OutboxEntry>) {
    transport.core.store.durable().await.expect("flush");
    let worker = Worker::default();
    let mut sends = JoinSet::new();
    for entry in entries {
        let route = route(transport, &entry);
        let lane = route.lane();
        worker.start(&entry.id, &lane, usize::MAX);
        sends.spawn(send(transport.clone(), entry, route, lane, worker.clone()));
    }
    sends.join_all().await;
    let batch = std::mem::take(&mut worker.state.lock().unwrap().reported);
    record_batch(transport, &worker, batch).await;
}

/// The worker's memory: which entries are claimed (being sent, or their
/// outcome waiting to be recorded, so no scan sends them twice), the sends
/// in flight per destination, and the outcomes waiting to be recorded.
#[derive(Clone, Default)]
struct Worker {
    state: Arc<Mutex<WorkerState>>,
    /// Wakes the recorder.
    recorder: Arc<Notify>,
    /// Tells the loop a slot is free or a retry was scheduled.
    loop_wake: Arc<Notify>,
}

#[derive(Default)]
struct WorkerState {
    claimed: HashSet<String>,
    per_destination: HashMap<String, usize>,
    sending: usize,
    reported: Vec<Outcome>,
    first_reported: Option<Instant>,
    closing: bool,
}

enum Start {
    Started,
    /// Already being sent or recorded.
    Claimed,
    /// Its destination (or the whole outbox) is at its limit.
    Full,
}

impl Worker {
    fn claimed(&self, id: &str) -> bool {
        self.state
            .lock()
            .expect("outbox worker")
            .claimed
            .contains(id)
    }

    fn start(&self, id: &str, dest: &str, per_destination: usize) -> Start {
        let mut w = self.state.lock().expect("outbox worker");
        if w.claimed.contains(id) {
            return Start::Claimed;
        }
        let busy = w.per_destination.get(dest).copied().unwrap_or(0);
        if busy >= per_destination || w.sending >= MAX_IN_FLIGHT {
            return Start::Full;
        }
        w.claimed.insert(id.to_string());
        *w.per_destination.entry(dest.to_string()).or_default() += 1;
        w.sending += 1;
        Start::Started
    }

    /// A send's outcome, for the recorder. The destination's slot is free
    /// again; the entry stays claimed until its outcome is recorded.
    fn report(&self, outcome: Outcome, dest: &str) {
        let mut w = self.state.lock().expect("outbox worker");
        if let Some(n) = w.per_destination.get_mut(dest) {
            *n -= 1;
            if *n == 0 {
                w.per_destination.remove(dest);
            }
        }
        w.sending -= 1;
        w.first_reported.get_or_insert_with(Instant::now);
        w.reported.push(outcome);
        drop(w);
        self.recorder.notify_one();
        self.loop_wake.notify_one();
    }

    /// The reported outcomes when it is time to record them, else how long
    /// to wait at most.
    fn take_batch(&self) -> std::result::Result<Vec<Outcome>, Duration> {
        let mut w = self.state.lock().expect("outbox worker");
        let Some(first) = w.first_reported else {
            return Err(Duration::from_secs(3600));
        };
        let waited = first.elapsed();
        // A record waits on a tracked message's note (RequestPending →
        // RequestSent): it goes in at once, so the peer's answer finds the
        // record moved on; only untracked notes (acks, pings) linger.
        let tracked = w.reported.iter().any(|o| o.entry().record_id.is_some());
        if tracked || w.closing || w.reported.len() >= RECORD_BATCH || waited >= LINGER {
            w.first_reported = None;
            Ok(std::mem::take(&mut w.reported))
        } else {
            Err(LINGER - waited)
        }
    }

    /// Recorded entries are no longer claimed (rescheduled, or gone).
    fn finish(&self, recorded: &[Outcome]) {
        let mut w = self.state.lock().expect("outbox worker");
        for o in recorded {
            w.claimed.remove(&o.entry().id);
        }
    }
}

/// One attempt: deliver, and report the outcome to the recorder.
async fn send(
    transport: Transport,
    entry: OutboxEntry,
    route: Route,
    lane: String,
    worker: Worker,
) {
    // thid and type are filled in by `deliver` once it has read the
    // message; result once the attempt is settled.
    let span = tracing::info_span!("outbound", wallet = %entry.wallet_id, id = %entry.id,
        to = %entry.to, thid = tracing::field::Empty, r#type = tracing::field::Empty,
        result = tracing::field::Empty);
    let started = std::time::Instant::now();
    let result = deliver(&transport, &entry, &route)
        .instrument(span.clone())
        .await;
    if result.is_ok() {
        crate::crashpoint!("outbox.after_send");
    }
    let took = started.elapsed();
    let class = match &route {
        Route::Local => "local",
        Route::Remote(url) => crate::metrics::destination_class(url),
        Route::Nowhere(_) => "none",
    };
    let outcome = settle(&transport.core.config.outbox, entry, result);
    let label = match &outcome {
        Outcome::Delivered(..) => "delivered",
        Outcome::Failed { gave_up: false, .. } => "failed",
        Outcome::Failed { gave_up: true, .. } => "gave_up",
    };
    span.record("result", label);
    transport.core.metrics.delivery(label, class, took);
    worker.report(outcome, &lane);
}

/// Records reported outcomes in batches until the worker closes. Every
/// sled transaction costs a log write, so outcomes that arrive close
/// together share one; the recorder waits at most `LINGER` for more.
async fn record_outcomes(transport: Transport, worker: Worker) {
    loop {
        let batch = loop {
            match worker.take_batch() {
                Ok(batch) => break batch,
                Err(wait) => {
                    if worker.state.lock().expect("outbox worker").closing {
                        return;
                    }
                    let _ = tokio::time::timeout(wait, worker.recorder.notified()).await;
                    // Let sends finishing at the same moment report too, so
                    // they share the transaction.
                    tokio::task::yield_now().await;
                }
            }
        };
        record_batch(&transport, &worker, batch).await;
    }
}

/// One transaction for the batch (each alone if one fails). The entries
/// are free once it has committed (rescheduled or gone; a scan flushes
/// before it sends), and the effects are published with the next flush,
/// whoever makes it.
async fn record_batch(transport: &Transport, worker: &Worker, outcomes: Vec<Outcome>) {
    if outcomes.is_empty() {
        return;
    }
    let core = &transport.core;
    let recorded = core.store.transact_each(&outcomes, |tx, o| {
        After::gather(|after| record(transport, tx, after, o)).map(|((), after)| after)
    });
    crate::crashpoint!("outbox.after_record");
    let mut afters = Vec::with_capacity(recorded.len());
    for (o, r) in outcomes.iter().zip(recorded) {
        match r {
            Ok(after) => afters.push(after),
            Err(e) => {
                tracing::error!(id = %o.entry().id, error = %e, "recording a delivery failed")
            }
        }
    }
    worker.finish(&outcomes);
    // A retry was scheduled: the loop looks again at when the next is due.
    if outcomes
        .iter()
        .any(|o| matches!(o, Outcome::Failed { gave_up: false, .. }))
    {
        worker.loop_wake.notify_one();
    }
    match core.store.durable_within(LINGER).await {
        Ok(flushed) => afters
            .into_iter()
            .for_each(|a| a.publish_flushed(&flushed, core)),
        Err(e) => tracing::error!(error = %e, "flush after recording deliveries failed"),
    }
}

/// Writes one outcome: a delivered entry leaves the outbox; a failed one
/// is rescheduled or buried. Either way its protocol hears of it.
fn record(transport: &Transport, tx: &StoreTx, after: &mut After, o: &Outcome) -> Result<()> {
    match o {
        Outcome::Delivered(entry, msg_type) => {
            tx.remove_outbox(&entry.id)?;
            transport.dispatch().delivered(tx, entry, msg_type, after)
        }
        Outcome::Failed { entry, gave_up } => {
            if *gave_up {
                tx.bury_outbox(entry)?;
            } else {
                tx.put_outbox(entry)?;
            }
            transport
                .dispatch()
                .delivery_failed(tx, entry, *gave_up, after)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::didcomm::Message;

    /// A message committed but not yet flushed stays in the process: the
    /// worker sends it only once the flush that makes it durable is done.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_sent_before_its_transaction_is_durable() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let posts = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/didcomm", listener.local_addr().unwrap());
        let counter = posts.clone();
        let app = axum::Router::new().route(
            "/didcomm",
            axum::routing::post(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { axum::http::StatusCode::ACCEPTED }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });

        let t = crate::testing::core();
        let elsewhere = crate::testing::core();
        let peer = crate::wallet::new_did(
            &elsewhere.core.keys,
            &url,
            "default",
            crate::store::DidMethod::Peer2,
            "test",
        );
        let ours = t.did("default", crate::store::DidMethod::Peer2);
        let shutdown = CancellationToken::new();
        tokio::spawn(run(t.transport.clone(), shutdown.clone()));

        let held = t.core.store.hold_flushes().await;
        let ping = Message::new(
            "https://didcomm.org/trust-ping/2.0/ping",
            serde_json::json!({}),
        );
        let ((), after) = After::transact(&t.core, |tx, after| {
            super::super::enqueue(tx, after, "default", &ours.did, &peer.record.did, &ping)
        })
        .unwrap();
        // The writer hands the entry over once its flush is done; meanwhile
        // the worker scans anyway (its first scan, here).
        let core = t.core.clone();
        tokio::spawn(async move { after.publish(&core).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(posts.load(Ordering::SeqCst), 0, "sent before the flush");
        drop(held);
        for _ in 0..100 {
            if posts.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(posts.load(Ordering::SeqCst), 1, "sent once durable");
        shutdown.cancel();
    }
}
