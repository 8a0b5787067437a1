//! Expiry and idle timeouts: a record whose offer or request expired, or
//! whose thread made no progress for `issuance.thread_timeout_secs`, is
//! Abandoned; so are the records of a connection that failed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::machine::Event;
use super::{Inputs, Io, commit};
use crate::Core;
use crate::after::After;
use crate::error::Result;
use crate::store::{Connection, StoreTx};

impl super::Issuance {
    /// Abandons records whose offer/request expired or whose thread went
    /// idle past `issuance.thread_timeout_secs`.
    pub async fn sweep(self, shutdown: CancellationToken) {
        let core = self.core;
        let mut tick = tokio::time::interval(Duration::from_millis(
            core.config.issuance.sweep_interval_ms,
        ));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(e) = sweep_once(&core).await {
                tracing::error!(error = %e, "sweeping expired records failed");
            }
        }
    }
}

/// Abandons the unfinished records of a connection that failed before it
/// was ever active (a claim link scanned by a second wallet): the one its
/// invitation brought, whose peer will never answer.
pub fn abandon_connection(
    core: &Core,
    tx: &StoreTx,
    after: &mut After,
    conn: &Connection,
) -> Result<()> {
    let Some(thid) = &conn.offer_thid else {
        return Ok(());
    };
    let Some(cur) = tx
        .record_by_thid(&conn.wallet_id, thid)?
        .filter(|r| r.connection_id == conn.id && !r.state.is_final())
    else {
        return Ok(());
    };
    let io = &mut Io {
        core,
        tx,
        after,
        by: super::BY_AGENT.into(),
    };
    let mut rec = cur.clone();
    let reason = format!(
        "connection {} failed: {}",
        conn.id,
        conn.problem.as_deref().unwrap_or_default()
    );
    io.advance(
        Some(&cur),
        &mut rec,
        Event::Abandon,
        &Inputs::because(reason),
    )?;
    Ok(())
}

async fn sweep_once(core: &Core) -> Result<()> {
    let now = crate::now_ms();
    for (wallet, id) in core.store.due_records(now, 512)? {
        let expired = commit(core, |io| {
            let cur = io.tx.record(&wallet, &id)?;
            if cur.state.is_final() || cur.deadline_ms.is_none_or(|d| d > now) {
                return Ok(false);
            }
            let reason = match cur.expires_at_ms {
                Some(e) if e <= now => {
                    format!("the {:?} stage expired (expires_time passed)", cur.state)
                }
                _ => format!(
                    "no progress in {:?} for {} s (issuance.thread_timeout_secs)",
                    cur.state, core.config.issuance.thread_timeout_secs
                ),
            };
            let mut rec = cur.clone();
            io.advance(
                Some(&cur),
                &mut rec,
                Event::Abandon,
                &Inputs::because(reason),
            )?;
            Ok(true)
        })
        .await?;
        if expired {
            tracing::info!(%wallet, record = %id, "record abandoned");
        }
    }
    Ok(())
}
