//! The durable, idempotent inbox: a message is unpacked and checked, stored
//! once per (wallet, message id), flushed, and only then acknowledged. A
//! worker hands stored messages to their protocol handlers.

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Message;
use crate::Core;
use crate::error::{Error, Result};
use crate::protocols;
use crate::store::InboxEntry;

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
    let fresh = core.store.transact(|tx| {
        if !tx.mark_seen(&wallet, &id)? {
            return Ok(false);
        }
        tx.push_inbox(seq, &entry)?;
        Ok(true)
    })?;
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
        for (seq, entry) in batch {
            if shutdown.is_cancelled() {
                return;
            }
            process(&core, seq, entry).await;
        }
    }
}

pub(crate) async fn process(core: &Core, seq: u64, entry: InboxEntry) {
    let message: Message = match serde_json::from_str(&entry.message) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "stored inbox entry does not parse; dropping it");
            let _ = core.store.transact(|tx| tx.remove_inbox(seq));
            return;
        }
    };
    let span = tracing::info_span!("inbound", wallet = %entry.wallet_id, thid = %message.thread_id(), r#type = %message.typ);
    async {
        // The handler's writes and the removal from the inbox commit together,
        // so a crash either leaves the message to be handled again or has
        // handled it completely.
        let result = core.store.transact(|tx| {
            let after = protocols::handle(core, tx, &entry, &message)?;
            tx.remove_inbox(seq)?;
            Ok(after)
        });
        match result {
            Ok(after) => {
                if let Err(e) = core.store.durable().await {
                    tracing::error!(error = %e, "flush after handling failed");
                }
                after.run(core);
            }
            Err(e) => {
                tracing::warn!(error = %e, "message refused by its protocol handler");
                let reported = core.store.transact(|tx| {
                    protocols::refuse(core, tx, &entry, &message, &e)?;
                    tx.remove_inbox(seq)
                });
                if let Err(e) = reported {
                    tracing::error!(error = %e, "dropping refused message failed");
                }
                core.outbox_wake.notify_one();
            }
        }
    }
    .instrument(span)
    .await
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
}
