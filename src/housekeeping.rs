//! Keeps bounded what grows on its own: message ids past their replay
//! window (`didcomm.limits.replay_window_secs`), dead letters past their
//! age or count (`outbox.dead_letter_retention_secs`,
//! `outbox.max_dead_letters`) and events past `issuance.event_retention`.
//! Runs at start and then every minute.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::Core;
use crate::error::Result;

const EVERY: Duration = Duration::from_secs(60);
/// Replay-guard entries dropped per pass; a backlog goes in later passes.
const SEEN_PER_PASS: usize = 100_000;

pub async fn run(core: Core, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match once(&core) {
            Ok(p) if p.seen + p.dead + p.events > 0 => tracing::info!(
                seen = p.seen,
                dead_letters = p.dead,
                events = p.events,
                "pruned"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "pruning failed"),
        }
    }
}

/// How many of each kind one pass removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub seen: usize,
    pub dead: usize,
    pub events: usize,
}

pub fn once(core: &Core) -> Result<Pruned> {
    let now = crate::now_ms();
    let outbox = &core.config.outbox;
    Ok(Pruned {
        seen: core.store.prune_seen(now, SEEN_PER_PASS)?,
        dead: core.store.prune_dead(
            now,
            outbox.dead_letter_retention_secs as i64 * 1000,
            outbox.max_dead_letters,
        )?,
        events: core
            .store
            .prune_events(core.config.issuance.event_retention)?,
    })
}
