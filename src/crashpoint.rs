//! Named crash points for the crash tests. `crashpoint!("outbox.after_send")`
//! marks a step; when the process was started with
//! `AGENTD_CRASHPOINT=outbox.after_send` (or `…:N`, the Nth time it is
//! reached) it logs the point and kills itself with SIGKILL there, exactly
//! as `kill -9` would. Compiled in only with the `crashpoints` feature,
//! which the test build turns on; elsewhere the macro expands to nothing.
//!
//! The points, in the order a message meets them:
//! - `action.after_commit`, `action.after_flush`: a control-plane action
//!   committed, then flushed, before its answer.
//! - `intake.after_commit`, `intake.after_flush`: `POST /didcomm` took a
//!   message in (handled or stored), then flushed, before the `202`.
//! - `inbox.after_commit`, `inbox.after_flush`: the inbox worker handled
//!   stored messages, then flushed, before publishing.
//! - `outbox.before_send`: due entries are durable, nothing sent yet.
//! - `outbox.after_send`: the peer answered `202`, nothing recorded yet.
//! - `outbox.after_record`: the outcome committed, not yet flushed.
//! - `store.before_flush`: inside every flush, before sled writes.

/// Marks a crash point (see the module doc).
#[macro_export]
macro_rules! crashpoint {
    ($name:literal) => {
        #[cfg(feature = "crashpoints")]
        $crate::crashpoint::reached($name);
    };
}

#[cfg(feature = "crashpoints")]
mod armed {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The armed point and on which hit it fires, from the environment.
    fn armed() -> Option<&'static (String, u64)> {
        static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
        ARMED
            .get_or_init(|| {
                let v = std::env::var("AGENTD_CRASHPOINT").ok()?;
                match v.split_once(':') {
                    Some((name, n)) => Some((name.to_string(), n.parse().unwrap_or(1))),
                    None => Some((v, 1)),
                }
            })
            .as_ref()
    }

    pub fn reached(name: &str) {
        static HITS: AtomicU64 = AtomicU64::new(0);
        let Some((armed, on)) = armed() else { return };
        if armed != name {
            return;
        }
        let hit = HITS.fetch_add(1, Ordering::SeqCst) + 1;
        if hit == *on {
            eprintln!("agentd: crashpoint {name} reached (hit {hit}): SIGKILL");
            // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

#[cfg(feature = "crashpoints")]
pub use armed::reached;
