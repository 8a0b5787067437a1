//! The protocols, and the one table that routes to them. [`Protocols`] is
//! what the transport dispatches to: each inbound message goes to the
//! protocol its type names, inside the transaction that takes it in, and
//! each tracked delivery outcome goes to the protocol that queued it. A new
//! protocol is a module here plus its line in [`Protocols::handle`].

pub mod connections;
pub mod discover_features;
pub mod issue_credential;
pub mod problem_report;
pub mod revocation_notification;
pub mod trust_ping;

#[cfg(test)]
mod fuzz;

use std::time::{Duration, Instant};

use crate::Core;
use crate::after::After;
use crate::didcomm::{Dispatch, Message, outbox};
use crate::error::{Error, Result};
use crate::store::{Connection, InboxEntry, OutboxEntry, StoreTx};

const ISSUE_CREDENTIAL: &str = "https://didcomm.org/issue-credential/3.";

/// Every protocol's shared state; cheap to clone.
#[derive(Clone)]
pub struct Protocols {
    core: Core,
    pub issuance: issue_credential::Issuance,
}

impl Protocols {
    pub fn new(core: &Core) -> Self {
        Protocols {
            core: core.clone(),
            issuance: issue_credential::Issuance::new(core),
        }
    }
}

impl Dispatch for Protocols {
    fn handle(
        &self,
        tx: &StoreTx,
        entry: &InboxEntry,
        msg: &Message,
        after: &mut After,
    ) -> Result<()> {
        let core = &self.core;
        let sender = entry.sender.as_deref().ok_or_else(|| {
            Error::PermissionDenied("anonymous (anoncrypt) messages are not accepted here".into())
        })?;
        let conn = connections::bind_peer(tx, entry, msg, sender)?;
        match msg.typ.as_str() {
            trust_ping::PING => trust_ping::on_ping(tx, &conn, msg, after),
            discover_features::QUERIES => discover_features::on_queries(tx, &conn, msg, after),
            trust_ping::PING_RESPONSE | discover_features::DISCLOSE => {
                after.wake(msg);
                Ok(())
            }
            problem_report::TYPE => {
                tracing::warn!(problem = %problem_report::describe(msg), "peer reported a problem");
                if !issue_credential::on_problem(core, tx, &conn, msg, after)? {
                    after.wake(msg);
                }
                Ok(())
            }
            t if t.starts_with(ISSUE_CREDENTIAL) || t == issue_credential::NOTIFICATION_ACK => {
                issue_credential::handle(core, tx, &conn, msg, after)
            }
            revocation_notification::REVOKE => revocation_notification::on_revoke(tx, &conn, msg),
            other => Err(Error::Unsupported(format!("message type {other}"))),
        }
    }

    /// Answers with a problem report when the sender is the peer of the
    /// connection the message came in on (a stranger whose first message on
    /// an invitation was refused is not: nothing is sent where a stranger
    /// points), and the message is not itself a problem report.
    fn refuse(
        &self,
        tx: &StoreTx,
        entry: &InboxEntry,
        msg: &Message,
        why: &Error,
        after: &mut After,
    ) -> Result<()> {
        let Some(sender) = entry.sender.as_deref() else {
            return Ok(());
        };
        let bound = tx
            .connection_by_our_did(&entry.recipient)?
            .is_some_and(|c| c.their_did.as_deref() == Some(sender));
        if !bound || msg.typ == problem_report::TYPE {
            return Ok(());
        }
        let report = problem_report::about(msg, why);
        outbox::enqueue(
            tx,
            after,
            &entry.wallet_id,
            &entry.recipient,
            sender,
            &report,
        )
    }

    /// Only issue-credential tracks its messages' delivery (`record_id`).
    fn delivered(
        &self,
        tx: &StoreTx,
        entry: &OutboxEntry,
        msg_type: &str,
        after: &mut After,
    ) -> Result<()> {
        match &entry.record_id {
            Some(record) => issue_credential::delivered(
                &self.core,
                tx,
                after,
                &entry.wallet_id,
                record,
                msg_type,
            ),
            None => Ok(()),
        }
    }

    fn delivery_failed(
        &self,
        tx: &StoreTx,
        entry: &OutboxEntry,
        gave_up: bool,
        after: &mut After,
    ) -> Result<()> {
        match entry.record_id {
            Some(_) => issue_credential::delivery_failed(&self.core, tx, after, entry, gave_up),
            None if gave_up => match connections::on_delivery_failed(tx, entry)? {
                // An offer that came with the invitation (a claim link
                // scanned second) has no one left to answer it.
                Some(failed) => {
                    issue_credential::abandon_connection(&self.core, tx, after, &failed)
                }
                None => Ok(()),
            },
            None => Ok(()),
        }
    }
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
    let ((), after) = After::transact(core, |tx, after| {
        outbox::enqueue(tx, after, &conn.wallet_id, &conn.our_did, their, msg)
    })?;
    after.publish(core).await?;
    let Some(reply) = reply else { return Ok(None) };
    match tokio::time::timeout(wait, reply).await {
        Ok(Ok(m)) => Ok(Some((m, started.elapsed()))),
        _ => {
            core.waiters.forget(&msg.id);
            Ok(None)
        }
    }
}
