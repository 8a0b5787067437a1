//! What a transaction leaves to do once it is durable: publish its record
//! events, hand replies to control-plane calls waiting on them, hand its
//! outbox entries to the outbox worker. Nothing here can run before a flush has made the transaction
//! durable ([`After::publish`]), so nothing a `kill -9` could undo is ever
//! seen outside the process.

use crate::Core;
use crate::didcomm::Message;
use crate::error::Result;
use crate::store::{Flushed, OutboxEntry, RecordEvent, StoreTx};

/// Effects to run once the transaction that produced them is durable.
#[derive(Default)]
#[must_use = "an After must be published once its transaction is durable"]
pub struct After {
    wake: Vec<Message>,
    outgoing: Vec<OutboxEntry>,
    events: Vec<RecordEvent>,
}

impl After {
    /// Hands `reply` to a control-plane call waiting on its thread.
    pub fn wake(&mut self, reply: &Message) {
        self.wake.push(reply.clone());
    }

    /// Hands an outbox entry the transaction wrote to the outbox worker.
    pub fn outgoing(&mut self, entry: OutboxEntry) {
        self.outgoing.push(entry);
    }

    /// Publishes a record event.
    pub fn event(&mut self, e: RecordEvent) {
        self.events.push(e);
    }

    /// Runs `f` in one store transaction with a fresh `After`, returning
    /// both once committed (not yet durable).
    pub fn transact<R>(
        core: &Core,
        f: impl Fn(&StoreTx, &mut After) -> Result<R>,
    ) -> Result<(R, After)> {
        core.store
            .transact(|tx| After::gather(|after| f(tx, after)))
    }

    /// Runs `f` with a fresh `After` and returns both: for work inside a
    /// transaction someone else runs (batched commits).
    pub fn gather<R>(f: impl FnOnce(&mut After) -> Result<R>) -> Result<(R, After)> {
        let mut after = After::default();
        let r = f(&mut after)?;
        Ok((r, after))
    }

    /// Waits until the (committed) transaction is durable, then runs the effects.
    pub async fn publish(self, core: &Core) -> Result<()> {
        let flushed = core.store.durable().await?;
        self.publish_flushed(&flushed, core);
        Ok(())
    }

    /// Runs the effects of a transaction that committed before `flushed`
    /// was asked for, so is durable now.
    pub fn publish_flushed(self, _flushed: &Flushed, core: &Core) {
        self.run(core);
    }

    /// Publishes in the background, for a commit whose caller went away (a
    /// dropped request) before it could.
    pub fn publish_detached(self, core: &Core) {
        let core = core.clone();
        tokio::spawn(async move {
            if let Err(e) = self.publish(&core).await {
                tracing::error!(error = %e, "flush after an abandoned commit failed");
            }
        });
    }

    fn run(self, core: &Core) {
        core.events.publish(self.events);
        for m in self.wake {
            core.waiters.wake(m.thread_id(), m.clone());
        }
        core.outbox.hand_over(self.outgoing);
    }
}
