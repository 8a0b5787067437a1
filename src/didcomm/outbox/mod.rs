//! The durable outbox. A message is written in the transaction that caused
//! it ([`enqueue`]); once that transaction is durable its writer hands the
//! entry to the worker (`After`), which packs it (authcrypt) and posts it,
//! or hands it to the inbox when the recipient is held by this daemon. A
//! failed send is retried with capped exponential backoff until
//! `outbox.retry_budget_secs` after it was queued; a refusal (a 4xx other
//! than 408/425/429) is final. The worker is in `worker.rs`, delivery in
//! `deliver.rs`; this file holds what an entry is and when it is retried.

mod deliver;
mod worker;

use std::sync::Mutex;

use super::Message;
use crate::after::After;
use crate::config;
use crate::error::Result;
use crate::store::{OutboxEntry, StoreTx};

#[cfg(test)]
pub(crate) use worker::attempt;
pub use worker::run;

/// Adds `msg` from our DID `from` to `to` to the outbox inside `tx`; the
/// worker gets it once the transaction is durable (`after`).
pub fn enqueue(
    tx: &StoreTx,
    after: &mut After,
    wallet: &str,
    from: &str,
    to: &str,
    msg: &Message,
) -> Result<()> {
    enqueue_for(tx, after, None, wallet, from, to, msg)
}

/// As [`enqueue`], for a message whose delivery (or failure) moves the
/// record `record_id` on: its outcome reaches [`super::Dispatch`].
pub fn enqueue_for(
    tx: &StoreTx,
    after: &mut After,
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
    let entry = OutboxEntry {
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
    };
    tx.put_outbox(&entry)?;
    after.outgoing(entry);
    Ok(())
}

/// Entries whose writers have made them durable, waiting for the worker
/// to take them: new messages reach it without a scan of the store.
#[derive(Default)]
pub struct Handoff {
    entries: Mutex<Vec<OutboxEntry>>,
    wake: tokio::sync::Notify,
}

impl Handoff {
    /// Gives the worker entries that are durable now.
    pub(crate) fn hand_over(&self, entries: Vec<OutboxEntry>) {
        if entries.is_empty() {
            return;
        }
        self.entries.lock().expect("outbox handoff").extend(entries);
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<OutboxEntry> {
        std::mem::take(&mut *self.entries.lock().expect("outbox handoff"))
    }
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

/// What became of one delivery attempt.
pub(super) enum Outcome {
    /// Delivered; the message's type.
    Delivered(OutboxEntry, String),
    /// Failed; the entry carries the attempt count, error and next
    /// attempt; `gave_up` when there will be none.
    Failed { entry: OutboxEntry, gave_up: bool },
}

impl Outcome {
    pub(super) fn entry(&self) -> &OutboxEntry {
        match self {
            Outcome::Delivered(entry, _) | Outcome::Failed { entry, .. } => entry,
        }
    }
}

/// Why a delivery failed, and whether trying again could help.
#[derive(Debug)]
pub(super) struct Failure {
    message: String,
    permanent: bool,
}

impl Failure {
    pub(super) fn retry(message: String) -> Self {
        Failure {
            message,
            permanent: false,
        }
    }

    pub(super) fn permanent(message: String) -> Self {
        Failure {
            message,
            permanent: true,
        }
    }
}

pub(super) fn settle(
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
