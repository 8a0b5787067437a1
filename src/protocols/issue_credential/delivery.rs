//! The outbox's report on a tracked message: delivered moves the record's
//! `…Pending` state on; a failure shows on the record, and giving up
//! abandons it.

use super::machine::Event;
use super::messages::{ISSUE, OFFER, REQUEST};
use super::{Inputs, Io, problem_report};
use crate::Core;
use crate::after::After;
use crate::didcomm::outbox;
use crate::error::Result;
use crate::store::{OutboxEntry, RecordState, StoreTx};

/// A tracked message left the outbox: its record's `…Pending` state moves
/// on. A stale note (the peer already answered) changes nothing.
pub fn delivered(
    core: &Core,
    tx: &StoreTx,
    after: &mut After,
    wallet: &str,
    record_id: &str,
    msg_type: &str,
) -> Result<()> {
    let io = &mut Io {
        core,
        tx,
        after,
        // Bookkeeping, not a decision: `updated_by` stays whose it was.
        by: String::new(),
    };
    let cur = tx.record(wallet, record_id)?;
    let waiting = match cur.state {
        RecordState::OfferPending => OFFER,
        RecordState::RequestPending => REQUEST,
        RecordState::CredentialGenerated => ISSUE,
        RecordState::ProblemReportPending => problem_report::TYPE,
        _ => return Ok(()),
    };
    if waiting != msg_type {
        return Ok(());
    }
    let mut rec = cur.clone();
    rec.meta_next_retry_ms = None;
    io.advance(Some(&cur), &mut rec, Event::Delivered, &Inputs::default())
}

/// A tracked message failed to deliver: the record shows the retries left,
/// when the next is due and why; when the outbox gave up, it is Abandoned.
pub fn delivery_failed(
    core: &Core,
    tx: &StoreTx,
    after: &mut After,
    entry: &OutboxEntry,
    gave_up: bool,
) -> Result<()> {
    let Some(record_id) = &entry.record_id else {
        return Ok(());
    };
    let io = &mut Io {
        core,
        tx,
        after,
        // Bookkeeping, not a decision: `updated_by` stays whose it was.
        by: String::new(),
    };
    let cur = tx.record(&entry.wallet_id, record_id)?;
    let mut rec = cur.clone();
    let error = entry.last_error.clone().unwrap_or_default();
    rec.meta_retries = match gave_up {
        true => 0,
        false => outbox::retries_left(
            &core.config.outbox,
            entry.attempts,
            crate::now_ms() - entry.created_at_ms,
        ),
    };
    rec.meta_last_failure = Some(error.clone());
    rec.meta_next_retry_ms = (!gave_up).then_some(entry.next_attempt_ms);
    if gave_up && !cur.state.is_final() {
        let reason = format!(
            "could not deliver after {} attempts: {error}",
            entry.attempts
        );
        return io.advance(
            Some(&cur),
            &mut rec,
            Event::Abandon,
            &Inputs::because(reason),
        );
    }
    rec.version += 1;
    rec.updated_at_ms = crate::now_ms();
    tx.put_record(Some(&cur), &rec)
}
