//! The durable outbox: messages are written in the transaction that caused
//! them, then packed (authcrypt) and delivered with exponential backoff. A
//! recipient held by this daemon gets the same envelope without the network.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{ENCRYPTED_MEDIA_TYPE, Message, Transport, inbox};
use crate::Core;
use crate::after::After;
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
    tx.put_outbox(&OutboxEntry {
        // The message id keys the entry, so a handler that runs twice writes it once.
        id: msg.id.clone(),
        wallet_id: wallet.to_string(),
        from: from.to_string(),
        to: to.to_string(),
        message: msg.to_json(),
        attempts: 0,
        next_attempt_ms: 0,
        last_error: None,
        created_at_ms: crate::now_ms(),
        record_id: record_id.map(str::to_string),
    })
}

const MAX_IN_FLIGHT: usize = 64;
const MAX_BACKOFF_MS: u64 = 5 * 60 * 1000;

/// Delivers due entries until shutdown.
pub async fn run(transport: Transport, shutdown: CancellationToken) {
    let core = &transport.core;
    loop {
        let wake = core.outbox_wake.notified();
        let now = crate::now_ms();
        let entries = core.store.outbox_all().unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading the outbox failed");
            Vec::new()
        });
        let (due, later): (Vec<_>, Vec<_>) =
            entries.into_iter().partition(|e| e.next_attempt_ms <= now);
        let sent_some = !due.is_empty();
        attempt(&transport, due).await;
        // Failed sends were rescheduled: read again to sleep until the
        // earliest of them.
        if sent_some && !shutdown.is_cancelled() {
            continue;
        }
        let sleep = later
            .iter()
            .map(|e| e.next_attempt_ms)
            .min()
            .map(|t| Duration::from_millis((t - crate::now_ms()).max(1) as u64))
            .unwrap_or(Duration::from_secs(3600));
        if shutdown.is_cancelled() {
            return;
        }
        tokio::select! {
            _ = wake => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Delivers `entries` (at most MAX_IN_FLIGHT at a time), then records what
/// happened to all of them in one transaction: every sled transaction
/// writes and syncs the log, so one per round rather than one per message.
pub(crate) async fn attempt(transport: &Transport, entries: Vec<OutboxEntry>) {
    let core = &transport.core;
    if entries.is_empty() {
        return;
    }
    let mut sends = JoinSet::new();
    let mut outcomes = Vec::with_capacity(entries.len());
    for entry in entries {
        if sends.len() >= MAX_IN_FLIGHT {
            outcomes.extend(
                sends
                    .join_next()
                    .await
                    .map(|r| r.expect("delivery panicked")),
            );
        }
        let transport = transport.clone();
        sends.spawn(async move {
            let span = tracing::info_span!("outbound", wallet = %entry.wallet_id, id = %entry.id, to = %entry.to);
            let result = deliver(&transport, &entry).instrument(span).await;
            (entry, result)
        });
    }
    while let Some(r) = sends.join_next().await {
        outcomes.push(r.expect("delivery panicked"));
    }
    let outcomes: Vec<_> = outcomes
        .into_iter()
        .map(|(entry, result)| settle_entry(core, entry, result))
        .collect();
    // Removal need not be durable before going on: a crash before the next
    // flush only re-sends, and receivers deduplicate.
    let recorded = core.store.transact_each(&outcomes, |tx, o| {
        After::gather(|after| record(transport, tx, after, o))
    });
    let mut afters = Vec::with_capacity(recorded.len());
    for (o, r) in outcomes.iter().zip(recorded) {
        match r {
            Ok(((), after)) => afters.push(after),
            Err(e) => {
                tracing::error!(id = %o.entry().id, error = %e, "recording a delivery failed")
            }
        }
    }
    if let Err(e) = After::publish_all(afters, core).await {
        tracing::error!(error = %e, "flush after recording deliveries failed");
    }
}

/// What became of one delivery attempt.
enum Outcome {
    /// Delivered; the message's type.
    Delivered(OutboxEntry, String),
    /// Failed; the entry carries the attempt count, error and next attempt.
    Failed(OutboxEntry),
}

impl Outcome {
    fn entry(&self) -> &OutboxEntry {
        match self {
            Outcome::Delivered(entry, _) | Outcome::Failed(entry) => entry,
        }
    }
}

/// Past the retry limit the outbox gives up on an entry.
fn gave_up(core: &Core, entry: &OutboxEntry) -> bool {
    entry.attempts > core.config.outbox.max_retries
}

fn settle_entry(core: &Core, mut entry: OutboxEntry, result: Result<String>) -> Outcome {
    let e = match result {
        Ok(msg_type) => return Outcome::Delivered(entry, msg_type),
        Err(e) => e,
    };
    entry.attempts += 1;
    entry.last_error = Some(e.to_string());
    if gave_up(core, &entry) {
        tracing::warn!(id = %entry.id, error = %e, attempts = entry.attempts, "delivery failed; giving up");
    } else {
        let delay = backoff(core.config.outbox.base_backoff_ms, entry.attempts);
        entry.next_attempt_ms = crate::now_ms() + delay as i64;
        tracing::info!(id = %entry.id, error = %e, attempts = entry.attempts, retry_in_ms = delay, "delivery failed; will retry");
    }
    Outcome::Failed(entry)
}

/// Writes one outcome: a delivered entry leaves the outbox and moves its
/// record on; a failed one is rescheduled or buried, and its record told.
fn record(transport: &Transport, tx: &StoreTx, after: &mut After, o: &Outcome) -> Result<()> {
    match o {
        Outcome::Delivered(entry, msg_type) => {
            tx.remove_outbox(&entry.id)?;
            transport.dispatch().delivered(tx, entry, msg_type, after)
        }
        Outcome::Failed(entry) => {
            let gave_up = gave_up(&transport.core, entry);
            if gave_up {
                tx.bury_outbox(entry)?;
            } else {
                tx.put_outbox(entry)?;
            }
            transport
                .dispatch()
                .delivery_failed(tx, entry, gave_up, after)
        }
    }
}

/// base · 2^(attempt-1), ±25% jitter, capped.
fn backoff(base_ms: u64, attempt: u32) -> u64 {
    let exp = base_ms.saturating_mul(1u64 << (attempt.saturating_sub(1)).min(20));
    let capped = exp.min(MAX_BACKOFF_MS);
    let jitter = rand::random_range(0.75..1.25);
    ((capped as f64) * jitter) as u64
}

/// Packs and delivers one entry; returns the message type.
async fn deliver(transport: &Transport, entry: &OutboxEntry) -> Result<String> {
    let core = &transport.core;
    let message: Message = serde_json::from_str(&entry.message)
        .map_err(|e| Error::Internal(format!("stored outbox message: {e}")))?;
    let from = core.store.did(&entry.wallet_id, &entry.from)?;
    let packed = core.envelopes.pack_authcrypt(&from, &entry.to, &message)?;
    if core.store.did_owner(&entry.to)?.is_some() {
        inbox::receive(transport, packed.as_bytes()).await?;
        return Ok(message.typ);
    }
    let endpoint = did::resolve(&entry.to)?
        .endpoint()
        .map(str::to_string)
        .ok_or_else(|| {
            Error::FailedPrecondition(format!("{} has no DIDComm endpoint", entry.to))
        })?;
    let response = transport
        .inner
        .http
        .post(&endpoint)
        .header(reqwest::header::CONTENT_TYPE, ENCRYPTED_MEDIA_TYPE)
        .body(packed)
        .send()
        .await
        .map_err(|e| Error::Internal(format!("POST {endpoint}: {e}")))?;
    let status = response.status();
    if status.is_success() {
        Ok(message.typ)
    } else {
        let body = response.text().await.unwrap_or_default();
        Err(Error::Internal(format!(
            "POST {endpoint}: {status} {}",
            body.chars().take(200).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for attempt in 1..=6u32 {
            let nominal = 500u64 << (attempt - 1);
            let d = backoff(500, attempt);
            assert!(
                d >= nominal * 3 / 4 && d <= nominal * 5 / 4,
                "{attempt}: {d}"
            );
        }
        assert!(backoff(500, 60) <= super::MAX_BACKOFF_MS * 5 / 4);
    }
}
