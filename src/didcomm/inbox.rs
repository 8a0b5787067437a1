//! The durable, idempotent inbox: a message is unpacked and checked, stored
//! once per (wallet, message id), flushed, and only then acknowledged. A
//! worker hands stored messages to their protocol handlers.

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::Message;
use crate::Core;
use crate::error::{Error, Result};
use crate::protocols::{self, After};
use crate::store::{InboxEntry, Store, StoreTx};

/// What happened to an accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    Stored,
    /// Seen before (a replay or a re-delivery): acknowledged, nothing changed.
    Duplicate,
}

/// Unpacks, checks and durably stores one inbound envelope. A full inbox
/// (`didcomm.max_inbox` waiting) refuses it with ResourceExhausted; the
/// bound is checked before each store, so concurrent requests can pass it
/// by at most their number.
pub async fn receive(core: &Core, packed: &[u8]) -> Result<Receipt> {
    let max = core.config.didcomm.max_inbox;
    if core.store.inbox_len() >= max {
        return Err(Error::ResourceExhausted(format!(
            "the inbox holds {max} unprocessed messages; retry later"
        )));
    }
    let unpacked = core.envelopes.unpack(packed)?;
    let wallet = unpacked.recipient.wallet_id.clone();
    let id = unpacked.message.id.clone();
    let entry = InboxEntry {
        wallet_id: wallet.clone(),
        recipient: unpacked.recipient.did,
        sender: unpacked.sender,
        message: unpacked.message.to_json(),
        received_at_ms: crate::now_ms(),
    };
    let seq = core.store.next_id()?;
    let fresh = core
        .intake
        .store(&core.store, seq, id.clone(), entry)
        .await?;
    // A duplicate is acknowledged only once its first copy is durable too.
    core.store.durable().await?;
    if fresh {
        core.inbox_wake.notify_one();
        Ok(Receipt::Stored)
    } else {
        tracing::debug!(%wallet, message_id = %id, "duplicate message ignored");
        Ok(Receipt::Duplicate)
    }
}

/// Concurrent receives share one transaction (each sled transaction writes
/// and syncs the log): whoever holds the commit lock writes every entry
/// queued so far and hands each its answer.
#[derive(Clone, Default)]
pub struct Intake(Arc<IntakeInner>);

#[derive(Default)]
struct IntakeInner {
    queue: std::sync::Mutex<Vec<Queued>>,
    commit: tokio::sync::Mutex<()>,
}

struct Queued {
    seq: u64,
    id: String,
    entry: InboxEntry,
    /// Whether the message was new (not seen before).
    done: oneshot::Sender<Result<bool>>,
}

impl Intake {
    /// Marks the message seen and stores it unless it was seen before;
    /// returns whether it was new. Not yet durable.
    async fn store(&self, store: &Store, seq: u64, id: String, entry: InboxEntry) -> Result<bool> {
        let (done, mut answer) = oneshot::channel();
        self.queue().push(Queued {
            seq,
            id,
            entry,
            done,
        });
        let _commit = self.0.commit.lock().await;
        // The previous holder may have written ours with its batch.
        if let Ok(fresh) = answer.try_recv() {
            return fresh;
        }
        let batch = std::mem::take(&mut *self.queue());
        let written = store.transact(|tx| {
            batch
                .iter()
                .map(|q| {
                    let fresh = tx.mark_seen(&q.entry.wallet_id, &q.id)?;
                    if fresh {
                        tx.push_inbox(q.seq, &q.entry)?;
                    }
                    Ok(fresh)
                })
                .collect::<Result<Vec<bool>>>()
        });
        for (i, q) in batch.into_iter().enumerate() {
            let result = match &written {
                Ok(fresh) => Ok(fresh[i]),
                Err(e) => Err(Error::Storage(e.to_string())),
            };
            let _ = q.done.send(result);
        }
        answer
            .await
            .expect("our entry was in this or an earlier batch")
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        self.0.queue.lock().expect("intake queue")
    }
}

/// Processes stored messages in arrival order until shutdown.
pub async fn run(core: Core, shutdown: CancellationToken) {
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
        process(&core, batch).await;
    }
}

/// Handles a batch of stored messages, then makes the batch durable with
/// one flush before anything the messages caused is published or sent.
/// The whole batch is tried in one transaction first (every sled
/// transaction writes and syncs the log); if any message is refused or
/// does not parse, each is handled in its own transaction instead, so one
/// bad message does not hold up the rest.
pub(crate) async fn process(core: &Core, batch: Vec<(u64, InboxEntry)>) {
    let together = core.store.transact(|tx| {
        let mut afters = Vec::with_capacity(batch.len());
        for (seq, entry) in &batch {
            let message: Message = serde_json::from_str(&entry.message)
                .map_err(|e| Error::Internal(format!("stored inbox entry: {e}")))?;
            afters.push(apply(core, tx, *seq, entry, &message)?);
        }
        Ok(afters)
    });
    let afters = together.unwrap_or_else(|_| {
        batch
            .iter()
            .filter_map(|(seq, entry)| handle(core, *seq, entry))
            .collect()
    });
    if let Err(e) = core.store.durable().await {
        tracing::error!(error = %e, "flush after handling failed");
    }
    for after in afters {
        after.run(core);
    }
}

/// Hands one message to its protocol inside `tx`. The handler's writes and
/// the removal from the inbox commit together, so a crash either leaves the
/// message to be handled again or has handled it completely.
fn apply(
    core: &Core,
    tx: &StoreTx,
    seq: u64,
    entry: &InboxEntry,
    message: &Message,
) -> Result<After> {
    let span = tracing::info_span!("inbound", wallet = %entry.wallet_id, thid = %message.thread_id(), r#type = %message.typ);
    let _enter = span.enter();
    let after = protocols::handle(core, tx, entry, message)?;
    tx.remove_inbox(seq)?;
    Ok(after)
}

/// Handles one stored message in its own transaction, or answers it with a
/// problem report; either way it leaves the inbox.
fn handle(core: &Core, seq: u64, entry: &InboxEntry) -> Option<After> {
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
        .transact(|tx| apply(core, tx, seq, entry, &message))
    {
        Ok(after) => Some(after),
        Err(e) => {
            tracing::warn!(wallet = %entry.wallet_id, thid = %message.thread_id(), error = %e, "message refused by its protocol handler");
            let reported = core.store.transact(|tx| {
                protocols::refuse(core, tx, entry, &message, &e)?;
                tx.remove_inbox(seq)
            });
            match reported {
                Ok(()) => {
                    let mut after = After::default();
                    after.sent();
                    Some(after)
                }
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
    use crate::store::DidMethod;
    use crate::testing;

    #[tokio::test]
    async fn a_full_inbox_refuses_and_stores_nothing() {
        let t = testing::core_with(|c| c.didcomm.max_inbox = 2);
        let a = t.did("a", DidMethod::Peer2);
        let b = t.did("b", DidMethod::Peer2);
        // Each call packs a new message (a fresh id).
        let packed = || {
            let mut m = Message::new(
                "https://didcomm.org/trust-ping/2.0/ping",
                serde_json::json!({}),
            );
            m.from = Some(a.did.clone());
            m.to = vec![b.did.clone()];
            t.core.envelopes.pack_authcrypt(&a, &b.did, &m).unwrap()
        };
        // No worker runs here, so the inbox only grows.
        for _ in 0..2 {
            assert_eq!(
                receive(&t.core, packed().as_bytes()).await.unwrap(),
                Receipt::Stored
            );
        }
        let before = t.core.store.record_count();
        let refused = receive(&t.core, packed().as_bytes()).await.unwrap_err();
        assert!(matches!(refused, Error::ResourceExhausted(_)), "{refused}");
        assert_eq!(t.core.store.record_count(), before);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_receives_share_transactions_and_store_a_message_once() {
        let t = testing::core();
        let a = t.did("a", DidMethod::Peer2);
        let b = t.did("b", DidMethod::Peer2);
        let pack = |n: usize| {
            let mut m = Message::new(
                "https://didcomm.org/trust-ping/2.0/ping",
                serde_json::json!({ "n": n }),
            );
            m.from = Some(a.did.clone());
            m.to = vec![b.did.clone()];
            t.core.envelopes.pack_authcrypt(&a, &b.did, &m).unwrap()
        };
        // Ten distinct messages, each sent four times at once.
        let envelopes: Vec<String> = (0..10).flat_map(|n| vec![pack(n); 4]).collect();
        let receipts = receive_all(&t.core, &envelopes).await;
        let stored = receipts.iter().filter(|r| **r == Receipt::Stored).count();
        assert_eq!(stored, 10, "{receipts:?}");
        assert_eq!(receipts.len() - stored, 30);
        assert_eq!(t.core.store.inbox_len(), 10);
    }

    async fn receive_all(core: &Core, envelopes: &[String]) -> Vec<Receipt> {
        let mut set = tokio::task::JoinSet::new();
        for e in envelopes {
            let (core, e) = (core.clone(), e.clone());
            set.spawn(async move { receive(&core, e.as_bytes()).await.unwrap() });
        }
        set.join_all().await
    }
}
