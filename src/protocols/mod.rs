//! Protocol handlers. [`handle`] runs inside the transaction that removes
//! the message from the inbox, so its writes (records, outbox) commit with
//! that removal; what must happen after the commit is returned as [`After`].

pub mod connections;
pub mod discover_features;
pub mod issue_credential;
pub mod problem_report;
pub mod trust_ping;

use std::time::{Duration, Instant};

use crate::Core;
use crate::didcomm::{Message, outbox};
use crate::error::{Error, Result};
use crate::store::{Connection, InboxEntry, RecordEvent, StoreTx};

/// Effects to run once the handler's transaction has committed.
#[derive(Default)]
pub struct After {
    wake: Vec<Message>,
    sent: bool,
    events: Vec<RecordEvent>,
}

impl After {
    /// Hands `reply` to a control-plane call waiting on its thread.
    pub fn wake(&mut self, reply: &Message) {
        self.wake.push(reply.clone());
    }

    /// Records that the handler queued outbound messages.
    pub fn sent(&mut self) {
        self.sent = true;
    }

    /// Publishes a record event once the transaction has committed.
    pub fn event(&mut self, e: RecordEvent) {
        self.events.push(e);
    }

    /// Runs `f` in one store transaction with a fresh `After`, returning
    /// both once committed; the caller runs the `After` (after flushing, if
    /// it acknowledges anything).
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

    pub fn run(self, core: &Core) {
        core.events.publish(self.events);
        for m in self.wake {
            core.waiters.wake(m.thread_id(), m.clone());
        }
        if self.sent {
            core.outbox_wake.notify_one();
        }
    }

    /// Runs once a flush has made the transaction durable, for a commit
    /// whose caller went away (a dropped request) before running it.
    pub fn run_when_durable(self, core: &Core) {
        let core = core.clone();
        tokio::spawn(async move {
            match core.store.durable().await {
                Ok(()) => self.run(&core),
                Err(e) => tracing::error!(error = %e, "flush after an abandoned commit failed"),
            }
        });
    }
}

const ISSUE_CREDENTIAL: &str = "https://didcomm.org/issue-credential/3.";

/// Dispatches an authenticated inbound message to its protocol.
pub fn handle(core: &Core, tx: &StoreTx, entry: &InboxEntry, msg: &Message) -> Result<After> {
    let sender = entry.sender.as_deref().ok_or_else(|| {
        Error::PermissionDenied("anonymous (anoncrypt) messages are not accepted here".into())
    })?;
    let conn = connections::bind_peer(tx, entry, msg, sender)?;
    let mut after = After::default();
    match msg.typ.as_str() {
        trust_ping::PING => trust_ping::on_ping(tx, &conn, msg, &mut after)?,
        discover_features::QUERIES => discover_features::on_queries(tx, &conn, msg, &mut after)?,
        trust_ping::PING_RESPONSE | discover_features::DISCLOSE => after.wake(msg),
        problem_report::TYPE => {
            tracing::warn!(problem = %problem_report::describe(msg), "peer reported a problem");
            if !issue_credential::on_problem(core, tx, &conn, msg, &mut after)? {
                after.wake(msg);
            }
        }
        t if t.starts_with(ISSUE_CREDENTIAL) => {
            issue_credential::handle(core, tx, &conn, msg, &mut after)?
        }
        other => return Err(Error::Unsupported(format!("message type {other}"))),
    }
    Ok(after)
}

/// Answers a message its handler refused with a problem report, when the
/// sender is known and the message is not itself a problem report.
pub fn refuse(
    core: &Core,
    tx: &StoreTx,
    entry: &InboxEntry,
    msg: &Message,
    why: &Error,
) -> Result<()> {
    let _ = core;
    let Some(sender) = entry.sender.as_deref() else {
        return Ok(());
    };
    if msg.typ == problem_report::TYPE {
        return Ok(());
    }
    let report = problem_report::about(msg, why);
    outbox::enqueue(tx, &entry.wallet_id, &entry.recipient, sender, &report)
}

/// Sends `msg` on `conn` and, when `wait` is non-zero, waits for the first
/// message in its thread. Returns the reply and the round-trip time.
pub async fn send_and_wait(
    core: &Core,
    conn: &Connection,
    msg: &Message,
    wait: Duration,
) -> Result<Option<(Message, Duration)>> {
    let their = conn.their_did.as_deref().ok_or_else(|| {
        Error::FailedPrecondition(format!("connection {} has no peer DID yet", conn.id))
    })?;
    let reply = (!wait.is_zero()).then(|| core.waiters.register(&msg.id));
    let started = Instant::now();
    core.store
        .transact(|tx| outbox::enqueue(tx, &conn.wallet_id, &conn.our_did, their, msg))?;
    core.store.durable().await?;
    core.outbox_wake.notify_one();
    let Some(reply) = reply else { return Ok(None) };
    match tokio::time::timeout(wait, reply).await {
        Ok(Ok(m)) => Ok(Some((m, started.elapsed()))),
        _ => {
            core.waiters.forget(&msg.id);
            Ok(None)
        }
    }
}
