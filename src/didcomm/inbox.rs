//! The durable, idempotent inbox: a message is unpacked and checked, marked
//! seen once per (wallet, message id), handled or stored, flushed, and only
//! then acknowledged. A worker hands stored messages to their protocol
//! handlers.

use tokio_util::sync::CancellationToken;

use axum::body::Bytes;

use super::{Message, Transport};
use crate::after::After;
use crate::error::{Error, Result};
use crate::store::{GroupCommit, InboxEntry, StoreTx};

/// What happened to an accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    Stored,
    /// Seen before (a replay or a re-delivery): acknowledged, nothing changed.
    Duplicate,
}

/// Unpacks, checks and durably takes in one inbound envelope: handled
/// at once, or stored for the worker (see `Intake`). A full inbox
/// (`didcomm.max_inbox` waiting) refuses it with ResourceExhausted; the
/// bound is checked before each store, so concurrent requests can pass it
/// by at most their number.
pub async fn receive(transport: &Transport, packed: Bytes) -> Result<Receipt> {
    let core = &transport.core;
    let max = core.config.didcomm.max_inbox;
    // Counting walks the inbox, so only when something waits.
    if !core.store.inbox_is_empty() && core.store.inbox_len() >= max {
        return Err(Error::ResourceExhausted(format!(
            "the inbox holds {max} unprocessed messages; retry later"
        )));
    }
    let unpacked = transport.unpack(packed).await?;
    let wallet = unpacked.recipient.wallet_id.clone();
    // The id is kept until its replay window ends (`check_plaintext`
    // refused it if created before the window).
    let window_ms = crate::secs_to_ms(core.config.didcomm.limits.replay_window_secs);
    let created_ms = unpacked.message.created_time.map_or(0, crate::secs_to_ms);
    let keep_until_ms = created_ms.max(crate::now_ms()).saturating_add(window_ms);
    let entry = InboxEntry {
        wallet_id: wallet.clone(),
        recipient: unpacked.recipient.did,
        sender: unpacked.sender,
        message: unpacked.message.to_json(),
        received_at_ms: crate::now_ms(),
    };
    let id = unpacked.message.id.clone();
    let seq = core.store.next_id()?;
    let arrival = Arrival {
        seq,
        entry,
        message: unpacked.message,
        keep_until_ms,
    };
    let taken = transport
        .inner
        .intake
        .run(
            arrival,
            |batch| take_in(transport, batch),
            |gone| match gone {
                Taken::Handled(after) => after.publish_detached(core),
                Taken::Stored => core.inbox_wake.notify_one(),
                Taken::Duplicate => {}
            },
        )
        .await?;
    crate::crashpoint!("intake.after_commit");
    // A duplicate is acknowledged only once its first copy is durable too.
    let flushed = core.store.durable().await?;
    crate::crashpoint!("intake.after_flush");
    match taken {
        Taken::Handled(after) => {
            after.publish_flushed(&flushed, core);
            Ok(Receipt::Stored)
        }
        Taken::Stored => {
            core.inbox_wake.notify_one();
            Ok(Receipt::Stored)
        }
        Taken::Duplicate => {
            tracing::debug!(%wallet, message_id = %id, "duplicate message ignored");
            Ok(Receipt::Duplicate)
        }
    }
}

/// Concurrent receives share one transaction ([`GroupCommit`]).
///
/// When the inbox is empty, a batch is handled in the transaction that
/// marks its messages seen, so a message costs one transaction and one
/// flush instead of two of each. Anything older still waiting in the inbox,
/// or a message its handler refuses, sends the whole batch the stored way
/// instead: the worker keeps arrival order and answers refusals one by one.
pub(crate) type Intake = GroupCommit<Arrival, Taken>;

/// A checked message on its way in.
pub(crate) struct Arrival {
    seq: u64,
    entry: InboxEntry,
    message: Message,
    keep_until_ms: i64,
}

/// What the intake transaction did with a message.
pub(crate) enum Taken {
    /// Handled by its protocol in the transaction that marked it seen.
    Handled(After),
    /// Stored in the inbox for the worker.
    Stored,
    Duplicate,
}

/// Marks each message seen and, unless seen before, handles or stores it.
/// Not yet durable.
fn take_in(transport: &Transport, batch: &[Arrival]) -> Vec<Result<Taken>> {
    let core = &transport.core;
    let handled = (core.config.didcomm.handle_inline && core.store.inbox_is_empty())
        .then(|| {
            take_each(transport, batch, |tx, a| {
                Ok(Taken::Handled(dispatch(
                    transport, tx, &a.entry, &a.message,
                )?))
            })
            .ok()
        })
        .flatten();
    let taken = handled.map_or_else(
        || {
            take_each(transport, batch, |tx, a| {
                tx.push_inbox(a.seq, &a.entry)?;
                Ok(Taken::Stored)
            })
        },
        Ok,
    );
    match taken {
        Ok(taken) => taken.into_iter().map(Ok).collect(),
        Err(e) => batch
            .iter()
            .map(|_| Err(Error::Storage(e.to_string())))
            .collect(),
    }
}

/// In one transaction, marks each message seen and passes the new ones to
/// `fresh`.
fn take_each(
    transport: &Transport,
    batch: &[Arrival],
    fresh: impl Fn(&StoreTx, &Arrival) -> Result<Taken>,
) -> Result<Vec<Taken>> {
    transport.core.store.transact(|tx| {
        batch
            .iter()
            .map(|a| {
                if tx.mark_seen(&a.entry.wallet_id, &a.message.id, a.keep_until_ms)? {
                    fresh(tx, a)
                } else {
                    Ok(Taken::Duplicate)
                }
            })
            .collect()
    })
}

/// Processes stored messages in arrival order until shutdown.
pub async fn run(transport: Transport, shutdown: CancellationToken) {
    let core = &transport.core;
    loop {
        let wake = core.inbox_wake.notified();
        let batch = match core.store.inbox_batch(256) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "reading the inbox failed");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = wake => continue,
                _ = shutdown.cancelled() => return,
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
        process(&transport, batch).await;
    }
}

/// Handles a batch of stored messages, then makes the batch durable with
/// one flush before anything the messages caused is published or sent.
/// The whole batch is tried in one transaction first (every sled
/// transaction writes and syncs the log); if any message is refused or
/// does not parse, each is handled in its own transaction instead, so one
/// bad message does not hold up the rest.
pub(crate) async fn process(transport: &Transport, batch: Vec<(u64, InboxEntry)>) {
    let core = &transport.core;
    let together = core.store.transact(|tx| {
        let mut afters = Vec::with_capacity(batch.len());
        for (seq, entry) in &batch {
            let message: Message = serde_json::from_str(&entry.message)
                .map_err(|e| Error::Internal(format!("stored inbox entry: {e}")))?;
            afters.push(apply(transport, tx, *seq, entry, &message)?);
        }
        Ok(afters)
    });
    let afters: Vec<After> = together.unwrap_or_else(|_| {
        batch
            .iter()
            .filter_map(|(seq, entry)| handle(transport, *seq, entry))
            .collect()
    });
    crate::crashpoint!("inbox.after_commit");
    match core.store.durable().await {
        Ok(flushed) => {
            crate::crashpoint!("inbox.after_flush");
            for after in afters {
                after.publish_flushed(&flushed, core);
            }
        }
        // The handlers' effects stay unpublished; the messages are handled
        // again after a restart if the commit did not survive.
        Err(e) => tracing::error!(error = %e, "flush after handling failed"),
    }
}

/// Hands one message to its protocol inside `tx`. The handler's writes and
/// the removal from the inbox commit together, so a crash either leaves the
/// message to be handled again or has handled it completely.
fn apply(
    transport: &Transport,
    tx: &StoreTx,
    seq: u64,
    entry: &InboxEntry,
    message: &Message,
) -> Result<After> {
    let after = dispatch(transport, tx, entry, message)?;
    tx.remove_inbox(seq)?;
    Ok(after)
}

/// Hands one message to its protocol inside `tx`, in its `inbound` span.
fn dispatch(
    transport: &Transport,
    tx: &StoreTx,
    entry: &InboxEntry,
    message: &Message,
) -> Result<After> {
    let span = tracing::info_span!("inbound", wallet = %entry.wallet_id, thid = %message.thread_id(), r#type = %message.typ);
    let _enter = span.enter();
    // Metadata only, never the body: enough to follow an exchange.
    tracing::debug!(id = %message.id, thid = ?message.thid, pthid = ?message.pthid,
        from = ?entry.sender, to = %entry.recipient, "message in");
    let (_, after) = After::gather(|after| transport.dispatch().handle(tx, entry, message, after))?;
    Ok(after)
}

/// Handles one stored message in its own transaction, or answers it with a
/// problem report; either way it leaves the inbox.
fn handle(transport: &Transport, seq: u64, entry: &InboxEntry) -> Option<After> {
    let core = &transport.core;
    let message: Message = match serde_json::from_str(&entry.message) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "stored inbox entry does not parse; dropping it");
            let _ = core.store.transact(|tx| tx.remove_inbox(seq));
            return None;
        }
    };
    match core
        .store
        .transact(|tx| apply(transport, tx, seq, entry, &message))
    {
        Ok(after) => Some(after),
        Err(e) => {
            tracing::warn!(wallet = %entry.wallet_id, thid = %message.thread_id(), error = %e, "message refused by its protocol handler");
            let reported = After::transact(core, |tx, after| {
                transport
                    .dispatch()
                    .refuse(tx, entry, &message, &e, after)?;
                tx.remove_inbox(seq)
            });
            match reported {
                Ok(((), after)) => Some(after),
                Err(e) => {
                    tracing::error!(error = %e, "dropping refused message failed");
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DidRecord;
    use crate::testing::{self, TestCore};

    /// Our DID of a connection between wallets "a" and "b", and its peer's.
    async fn connected(t: &TestCore) -> (DidRecord, String) {
        let (ours, _) = t.connect("a", "b").await;
        let from = t.core.store.did_owner(&ours.our_did).unwrap().unwrap();
        (from, ours.their_did.unwrap())
    }

    fn pack(t: &TestCore, from: &DidRecord, to: &str, typ: &str, n: usize) -> String {
        let mut m = Message::new(typ, serde_json::json!({"response_requested": true, "n": n}));
        m.from = Some(from.did.clone());
        m.to = vec![to.to_string()];
        t.core.envelopes.pack_authcrypt(from, to, &m).unwrap()
    }

    const PING: &str = "https://didcomm.org/trust-ping/2.0/ping";

    #[tokio::test]
    async fn a_full_inbox_refuses_and_stores_nothing() {
        // Every message is queued for the worker, and no worker runs here.
        let t = testing::core_with(|c| {
            c.didcomm.max_inbox = 2;
            c.didcomm.handle_inline = false;
        });
        let (from, to) = connected(&t).await;
        for n in 0..2 {
            let packed = pack(&t, &from, &to, PING, n);
            assert_eq!(
                receive(&t.transport, packed.into()).await.unwrap(),
                Receipt::Stored
            );
        }
        let before = t.core.store.record_count();
        let refused = receive(&t.transport, pack(&t, &from, &to, PING, 3).into())
            .await
            .unwrap_err();
        assert!(matches!(refused, Error::ResourceExhausted(_)), "{refused}");
        assert_eq!(t.core.store.record_count(), before);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_receives_share_transactions_and_store_a_message_once() {
        let t = testing::core_with(|c| c.didcomm.handle_inline = false);
        let (from, to) = connected(&t).await;
        // Ten distinct messages, each sent four times at once.
        let envelopes: Vec<String> = (0..10)
            .flat_map(|n| vec![pack(&t, &from, &to, PING, n); 4])
            .collect();
        let receipts = receive_all(&t.transport, &envelopes).await;
        let stored = receipts.iter().filter(|r| **r == Receipt::Stored).count();
        assert_eq!(stored, 10, "{receipts:?}");
        assert_eq!(receipts.len() - stored, 30);
        assert_eq!(t.core.store.inbox_len(), 10);
    }

    #[tokio::test]
    async fn a_message_is_handled_at_once_unless_older_ones_wait() {
        let t = testing::core();
        let (from, to) = connected(&t).await;
        let outbox = t.core.store.outbox_len();

        // Handled in the receiving transaction: nothing waits, the reply is queued.
        let r = receive(&t.transport, pack(&t, &from, &to, PING, 0).into())
            .await
            .unwrap();
        assert_eq!(r, Receipt::Stored);
        assert_eq!(t.core.store.inbox_len(), 0);
        assert_eq!(t.core.store.outbox_len(), outbox + 1);

        // A message its handler refuses is stored for the worker to answer,
        // and a good one behind it waits its turn rather than overtaking.
        let odd = pack(&t, &from, &to, "https://example.org/unknown/1.0/x", 1);
        receive(&t.transport, odd.into()).await.unwrap();
        receive(&t.transport, pack(&t, &from, &to, PING, 2).into())
            .await
            .unwrap();
        assert_eq!(t.core.store.inbox_len(), 2);
        assert_eq!(t.core.store.outbox_len(), outbox + 1);
    }

    /// A message id is kept until its replay window ends, then forgotten.
    #[tokio::test]
    async fn the_replay_guard_forgets_an_id_when_its_window_ends() {
        let t = testing::core();
        let (from, to) = connected(&t).await;
        let packed = pack(&t, &from, &to, PING, 0);
        let first = receive(&t.transport, packed.clone().into()).await.unwrap();
        assert_eq!(first, Receipt::Stored);
        let again = receive(&t.transport, packed.into()).await.unwrap();
        assert_eq!(again, Receipt::Duplicate);
        let window = t.core.config.didcomm.limits.replay_window_secs as i64 * 1000;
        let store = &t.core.store;
        assert_eq!(store.prune_seen(crate::now_ms(), 100).unwrap(), 0);
        // The connection's own handshake ping was seen too.
        assert!(
            store
                .prune_seen(crate::now_ms() + window + 1000, 100)
                .unwrap()
                >= 1
        );
    }

    async fn receive_all(transport: &Transport, envelopes: &[String]) -> Vec<Receipt> {
        let mut set = tokio::task::JoinSet::new();
        for e in envelopes {
            let (transport, e) = (transport.clone(), e.clone());
            set.spawn(async move { receive(&transport, e.into()).await.unwrap() });
        }
        set.join_all().await
    }
}
