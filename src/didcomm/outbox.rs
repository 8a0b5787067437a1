//! The durable outbox. A message is written in the transaction that caused
//! it; the worker sends it only once that transaction is durable, packs it
//! (authcrypt) and posts it, or hands it to the inbox when the recipient is
//! held by this daemon. At most `outbox.per_destination` sends are in flight
//! per destination, so one slow or dead endpoint holds up only its own
//! messages. Each outcome is recorded (concurrent outcomes share one
//! transaction) and published once durable. A failed send is retried with
//! capped exponential backoff until `outbox.retry_budget_secs` after it was
//! queued; a refusal (a 4xx other than 408/425/429) is final.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{ENCRYPTED_MEDIA_TYPE, Message, Transport, inbox};
use crate::after::After;
use crate::config;
use crate::did;
use crate::error::{Error, Result};
use crate::store::{OutboxEntry, StoreTx};

/// Adds `msg` from our DID `from` to `to` to the outbox inside `tx`.
pub fn enqueue(tx: &StoreTx, wallet: &str, from: &str, to: &str, msg: &Message) -> Result<()> {
    enqueue_for(tx, None, wallet, from, to, msg)
}

/// As [`enqueue`], for a message whose delivery (or failure) moves the
/// record `record_id` on: its outcome reaches [`super::Dispatch`].
pub fn enqueue_for(
    tx: &StoreTx,
    record_id: Option<&str>,
    wallet: &str,
    from: &str,
    to: &str,
    msg: &Message,
) -> Result<()> {
    let mut msg = msg.clone();
    msg.from = Some(from.to_string());
    msg.to = vec![to.to_string()];
    let now = crate::now_ms();
    tx.put_outbox(&OutboxEntry {
        // The message id keys the entry, so a handler that runs twice writes it once.
        id: msg.id.clone(),
        wallet_id: wallet.to_string(),
        from: from.to_string(),
        to: to.to_string(),
        message: msg.to_json(),
        attempts: 0,
        next_attempt_ms: now,
        last_error: None,
        created_at_ms: now,
        record_id: record_id.map(str::to_string),
    })
}

/// Retries a new entry has within `outbox`'s budget (for `meta_retries`).
pub fn retry_allowance(outbox: &config::Outbox) -> u32 {
    retries_left(outbox, 0, 0)
}

/// Retries left after `attempts` failed ones, `elapsed_ms` after queueing:
/// how many nominal backoff delays still fit in the budget, capped by
/// `outbox.max_retries` when that is set.
pub fn retries_left(outbox: &config::Outbox, attempts: u32, elapsed_ms: i64) -> u32 {
    let budget = outbox.retry_budget_secs as i64 * 1000;
    let (mut at, mut left) = (elapsed_ms, 0u32);
    // A budget of 30 days at the smallest backoff is far below this bound.
    while left < 1_000_000 {
        at += nominal_backoff(outbox, attempts + left + 1) as i64;
        if at > budget {
            break;
        }
        left += 1;
    }
    match outbox.max_retries {
        0 => left,
        max => left.min(max.saturating_sub(attempts)),
    }
}

/// How many due entries one scan reads.
const SCAN: usize = 512;
/// How soon a scan looks again at due entries that waited for a flush.
const UNFLUSHED_RECHECK: Duration = Duration::from_millis(50);
/// Sends in flight at once, over all destinations.
const MAX_IN_FLIGHT: usize = 256;
/// Outcomes are recorded together: once this many wait, or the oldest has
/// waited `LINGER`. Recording is not on a flow's path (a peer's answer may
/// overtake the note that our message left), so waiting costs nothing.
const RECORD_BATCH: usize = 64;
const LINGER: Duration = Duration::from_millis(20);

/// Delivers due entries until shutdown, then gives sends in flight a
/// moment to finish (the rest are sent again after a restart).
pub async fn run(transport: Transport, shutdown: CancellationToken) {
    let core = &transport.core;
    let worker = Worker::default();
    let recorder = tokio::spawn(record_outcomes(transport.clone(), worker.clone()));
    let mut sends = JoinSet::new();
    while !shutdown.is_cancelled() {
        let wake = core.outbox_wake.notified();
        let now = crate::now_ms();
        let due = core
            .store
            .outbox_due(now, SCAN, |id| worker.sending(id))
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "reading the outbox failed");
                Default::default()
            });
        // `outbox_due` returns only entries a flush has made durable:
        // nothing leaves before the transaction that queued it is on disk.
        if !due.entries.is_empty() {
            crate::crashpoint!("outbox.before_send");
            for entry in due.entries {
                let dest = destination(&transport, &entry);
                if worker.start(&entry.id, &dest, core.config.outbox.per_destination) {
                    sends.spawn(send(transport.clone(), entry, dest, worker.clone()));
                }
            }
        }
        while let Some(done) = sends.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "a delivery task failed");
            }
        }
        let mut sleep = match core.store.outbox_next_due_after(now) {
            Ok(Some(at)) => Duration::from_millis((at - crate::now_ms()).max(1) as u64),
            _ => Duration::from_secs(3600),
        };
        // Their writers wake us after their flush; look again soon anyway.
        if due.unflushed > 0 {
            sleep = sleep.min(UNFLUSHED_RECHECK);
        }
        tokio::select! {
            _ = wake => {}
            _ = worker.2.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
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
    worker.0.lock().expect("outbox worker").closing = true;
    worker.1.notify_one();
    let _ = recorder.await;
}

/// Delivers `entries` and records their outcomes, all at once, as the
/// worker would (tests drive the outbox with this).
#[cfg(test)]
pub(crate) async fn attempt(transport: &Transport, entries: Vec<OutboxEntry>) {
    transport.core.store.durable().await.expect("flush");
    let worker = Worker::default();
    let mut sends = JoinSet::new();
    for entry in entries {
        let dest = destination(transport, &entry);
        worker.start(&entry.id, &dest, usize::MAX);
        sends.spawn(send(transport.clone(), entry, dest, worker.clone()));
    }
    sends.join_all().await;
    let batch = std::mem::take(&mut worker.0.lock().unwrap().reported);
    record_batch(transport, &worker, batch).await;
}

/// The worker's memory: which entries are being sent (their slots, per
/// destination), the outcomes waiting to be recorded, and the recorder's
/// wake-up. An entry keeps its slot until its outcome is recorded, so a
/// scan never sends it twice.
#[derive(Clone, Default)]
struct Worker(
    Arc<Mutex<WorkerState>>,
    /// Wakes the recorder.
    Arc<tokio::sync::Notify>,
    /// Tells the scan a slot it wanted is free.
    Arc<tokio::sync::Notify>,
);

#[derive(Default)]
struct WorkerState {
    /// Entries being sent or waiting for their outcome to be recorded.
    ids: HashSet<String>,
    /// Sends in flight, per destination and in all.
    per_destination: HashMap<String, usize>,
    sending: usize,
    /// A scan left due entries for want of a slot.
    waiting: bool,
    reported: Vec<Outcome>,
    first_reported: Option<std::time::Instant>,
    closing: bool,
}

impl Worker {
    fn sending(&self, id: &str) -> bool {
        self.0.lock().expect("outbox worker").ids.contains(id)
    }

    /// Takes a slot for `id` at `dest`, unless that destination (or the
    /// whole outbox) is at its limit.
    fn start(&self, id: &str, dest: &str, per_destination: usize) -> bool {
        let mut w = self.0.lock().expect("outbox worker");
        let busy = w.per_destination.get(dest).copied().unwrap_or(0);
        if busy >= per_destination || w.sending >= MAX_IN_FLIGHT {
            w.waiting = true;
            return false;
        }
        w.ids.insert(id.to_string());
        w.sending += 1;
        *w.per_destination.entry(dest.to_string()).or_default() += 1;
        true
    }

    /// A send's outcome, for the recorder. The destination's slot is free
    /// again; the entry stays out of scans until its outcome is recorded.
    fn report(&self, outcome: Outcome, dest: String) {
        let mut w = self.0.lock().expect("outbox worker");
        if let Some(n) = w.per_destination.get_mut(&dest) {
            *n -= 1;
            if *n == 0 {
                w.per_destination.remove(&dest);
            }
        }
        w.sending -= 1;
        let freed_waited_for = std::mem::take(&mut w.waiting);
        w.first_reported.get_or_insert_with(std::time::Instant::now);
        w.reported.push(outcome);
        drop(w);
        self.1.notify_one();
        if freed_waited_for {
            self.2.notify_one();
        }
    }

    /// The reported outcomes when it is time to record them (see
    /// `RECORD_BATCH`), else how long to wait at most.
    fn take_batch(&self) -> Result<Vec<Outcome>, Duration> {
        let mut w = self.0.lock().expect("outbox worker");
        let Some(first) = w.first_reported else {
            return Err(Duration::from_secs(3600));
        };
        let waited = first.elapsed();
        if w.closing || w.reported.len() >= RECORD_BATCH || waited >= LINGER {
            w.first_reported = None;
            Ok(std::mem::take(&mut w.reported))
        } else {
            Err(LINGER - waited)
        }
    }

    /// Recorded entries may be scanned again (rescheduled, or gone).
    fn finish(&self, recorded: &[Outcome]) {
        let mut w = self.0.lock().expect("outbox worker");
        for o in recorded {
            w.ids.remove(&o.entry().id);
        }
    }
}

/// The destination an entry's sends count against: this daemon, or the
/// origin of the recipient's endpoint.
fn destination(transport: &Transport, entry: &OutboxEntry) -> String {
    if let Ok(Some(_)) = transport.core.store.did_owner(&entry.to) {
        return "local".into();
    }
    did::resolve(&entry.to)
        .ok()
        .and_then(|d| d.endpoint().map(str::to_string))
        .and_then(|e| url::Url::parse(&e).ok())
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|| "unresolvable".into())
}

/// One attempt: deliver, and report the outcome to the recorder.
async fn send(transport: Transport, entry: OutboxEntry, dest: String, worker: Worker) {
    let span =
        tracing::info_span!("outbound", wallet = %entry.wallet_id, id = %entry.id, to = %entry.to);
    let result = deliver(&transport, &entry).instrument(span).await;
    if result.is_ok() {
        crate::crashpoint!("outbox.after_send");
    }
    worker.report(settle(&transport.core.config.outbox, entry, result), dest);
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
                    if worker.0.lock().expect("outbox worker").closing {
                        return;
                    }
                    let _ = tokio::time::timeout(wait, worker.1.notified()).await;
                }
            }
        };
        record_batch(&transport, &worker, batch).await;
    }
}

/// One transaction for the batch (each alone if one fails); the slots are
/// free once it has committed (a scan sees the entries rescheduled or
/// gone, and flushes before it sends), and its effects are published with
/// the next flush, whoever makes it.
async fn record_batch(transport: &Transport, worker: &Worker, batch: Vec<Outcome>) {
    if batch.is_empty() {
        return;
    }
    let core = &transport.core;
    let outcomes: Vec<Outcome> = batch;
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
    match core.store.durable_within(LINGER).await {
        Ok(flushed) => afters
            .into_iter()
            .for_each(|a| a.publish_flushed(&flushed, core)),
        Err(e) => tracing::error!(error = %e, "flush after recording deliveries failed"),
    }
}

/// What became of one delivery attempt.
enum Outcome {
    /// Delivered; the message's type.
    Delivered(OutboxEntry, String),
    /// Failed; the entry carries the attempt count, error and next
    /// attempt; `gave_up` when there will be none.
    Failed { entry: OutboxEntry, gave_up: bool },
}

impl Outcome {
    fn entry(&self) -> &OutboxEntry {
        match self {
            Outcome::Delivered(entry, _) | Outcome::Failed { entry, .. } => entry,
        }
    }
}

/// Why a delivery failed, and whether trying again could help.
#[derive(Debug)]
struct Failure {
    message: String,
    permanent: bool,
}

impl Failure {
    fn retry(message: String) -> Self {
        Failure {
            message,
            permanent: false,
        }
    }

    fn permanent(message: String) -> Self {
        Failure {
            message,
            permanent: true,
        }
    }
}

fn settle(
    outbox: &config::Outbox,
    mut entry: OutboxEntry,
    result: Result<String, Failure>,
) -> Outcome {
    let failure = match result {
        Ok(msg_type) => return Outcome::Delivered(entry, msg_type),
        Err(f) => f,
    };
    entry.attempts += 1;
    entry.last_error = Some(failure.message.clone());
    let now = crate::now_ms();
    let delay = backoff(outbox, entry.attempts);
    let over_count = outbox.max_retries > 0 && entry.attempts > outbox.max_retries;
    let over_budget =
        now + delay as i64 > entry.created_at_ms + outbox.retry_budget_secs as i64 * 1000;
    let gave_up = failure.permanent || over_count || over_budget;
    if gave_up {
        tracing::warn!(id = %entry.id, error = %failure.message, attempts = entry.attempts, permanent = failure.permanent, "delivery failed; giving up");
    } else {
        entry.next_attempt_ms = now + delay as i64;
        tracing::info!(id = %entry.id, error = %failure.message, attempts = entry.attempts, retry_in_ms = delay, "delivery failed; will retry");
    }
    Outcome::Failed { entry, gave_up }
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
                after.sent();
            }
            transport
                .dispatch()
                .delivery_failed(tx, entry, *gave_up, after)
        }
    }
}

/// base · 2^(attempt-1), capped at the maximum.
fn nominal_backoff(outbox: &config::Outbox, attempt: u32) -> u64 {
    let exp = outbox
        .base_backoff_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(40));
    exp.min(outbox.max_backoff_ms)
}

/// The nominal backoff ±25%, so retries from many entries spread out.
fn backoff(outbox: &config::Outbox, attempt: u32) -> u64 {
    let jitter = rand::random_range(0.75..1.25);
    ((nominal_backoff(outbox, attempt) as f64) * jitter) as u64
}

/// Packs and delivers one entry; returns the message type.
async fn deliver(transport: &Transport, entry: &OutboxEntry) -> Result<String, Failure> {
    let core = &transport.core;
    let internal = |e: Error| Failure::permanent(e.to_string());
    let message: Message = serde_json::from_str(&entry.message)
        .map_err(|e| Failure::permanent(format!("stored outbox message: {e}")))?;
    let from = core
        .store
        .did(&entry.wallet_id, &entry.from)
        .map_err(internal)?;
    let packed = core
        .envelopes
        .pack_authcrypt(&from, &entry.to, &message)
        .map_err(internal)?;
    if core.store.did_owner(&entry.to).map_err(internal)?.is_some() {
        return match inbox::receive(transport, packed.as_bytes()).await {
            Ok(_) => Ok(message.typ),
            Err(e @ (Error::ResourceExhausted(_) | Error::Storage(_))) => {
                Err(Failure::retry(e.to_string()))
            }
            Err(e) => Err(internal(e)),
        };
    }
    let endpoint = did::resolve(&entry.to)
        .map_err(|e| internal(e.into()))?
        .endpoint()
        .map(str::to_string)
        .ok_or_else(|| Failure::permanent(format!("{} has no DIDComm endpoint", entry.to)))?;
    let response = transport
        .inner
        .http
        .post(&endpoint)
        .header(reqwest::header::CONTENT_TYPE, ENCRYPTED_MEDIA_TYPE)
        .body(packed)
        .send()
        .await
        .map_err(|e| Failure::retry(format!("POST {endpoint}: {e}")))?;
    let status = response.status();
    if status.is_success() {
        return Ok(message.typ);
    }
    let body = response.text().await.unwrap_or_default();
    let why = format!(
        "POST {endpoint}: {status} {}",
        body.chars().take(200).collect::<String>()
    );
    // A refusal will not change by asking again; overload and timeouts may.
    let transient = status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429);
    Err(if transient {
        Failure::retry(why)
    } else {
        Failure::permanent(why)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> config::Outbox {
        config::Outbox {
            base_backoff_ms: 500,
            max_backoff_ms: 60_000,
            retry_budget_secs: 24 * 3600,
            max_retries: 0,
            ..Default::default()
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let o = outbox();
        for attempt in 1..=6u32 {
            let nominal = 500u64 << (attempt - 1);
            let d = backoff(&o, attempt);
            assert!(
                d >= nominal * 3 / 4 && d <= nominal * 5 / 4,
                "{attempt}: {d}"
            );
        }
        assert!(backoff(&o, 60) <= 60_000 * 5 / 4);
    }

    #[test]
    fn retries_are_counted_from_the_time_budget() {
        let o = outbox();
        // 0.5+1+…+32 s (7 delays, 63.5 s) then 60 s each within 24 h.
        let expected = 7 + (24 * 3600 * 1000 - 63_500) / 60_000;
        assert_eq!(retry_allowance(&o), expected as u32);
        // Later, fewer are left; past the budget none.
        assert!(retries_left(&o, 10, 3_600_000) < retry_allowance(&o));
        assert_eq!(retries_left(&o, 10, 24 * 3_600_000), 0);
        // A count limit caps it.
        let capped = config::Outbox {
            max_retries: 5,
            ..outbox()
        };
        assert_eq!(retry_allowance(&capped), 5);
        assert_eq!(retries_left(&capped, 4, 1000), 1);
    }

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
            enqueue(tx, "default", &ours.did, &peer.record.did, &ping)?;
            after.sent();
            Ok(())
        })
        .unwrap();
        // The writer publishes (wakes the outbox) once its flush is done;
        // meanwhile the worker is woken anyway (by another writer, say).
        let core = t.core.clone();
        tokio::spawn(async move { after.publish(&core).await });
        t.core.outbox_wake.notify_one();
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

    #[test]
    fn failures_reschedule_until_the_budget_or_a_refusal_ends_them() {
        let o = outbox();
        let entry = |created_ago_ms: i64| OutboxEntry {
            id: "m".into(),
            wallet_id: "w".into(),
            from: "a".into(),
            to: "b".into(),
            message: "{}".into(),
            attempts: 3,
            next_attempt_ms: 0,
            last_error: None,
            created_at_ms: crate::now_ms() - created_ago_ms,
            record_id: None,
        };
        let gave_up = |o: Outcome| match o {
            Outcome::Failed { gave_up, entry } => (gave_up, entry),
            Outcome::Delivered(..) => panic!("not a failure"),
        };
        let (g, e) = gave_up(settle(&o, entry(0), Err(Failure::retry("down".into()))));
        assert!(!g);
        assert_eq!(e.attempts, 4);
        assert!(e.next_attempt_ms > crate::now_ms());
        let (g, _) = gave_up(settle(
            &o,
            entry(24 * 3_600_000),
            Err(Failure::retry("down".into())),
        ));
        assert!(g, "past the budget");
        let (g, _) = gave_up(settle(&o, entry(0), Err(Failure::permanent("410".into()))));
        assert!(g, "a refusal is final");
    }
}
