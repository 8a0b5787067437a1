//! DIDComm v2.1 transport: envelopes, `POST /didcomm` into the durable
//! inbox, and the durable outbox with its delivery worker. Transport moves
//! and stores messages; it never names a protocol. Inbound messages and
//! delivery outcomes reach the protocols through [`Dispatch`], which the
//! agent registers when it starts.

mod envelope;
pub mod http;
pub mod inbox;
mod message;
pub mod outbox;

pub use envelope::{EnvelopeError, Envelopes, Inspected, Unpacked};
pub use message::{Attachment, Message};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::Core;
use crate::after::After;
use crate::error::{Error, Result};
use crate::store::{InboxEntry, OutboxEntry, StoreTx};

/// The media type of encrypted DIDComm messages on HTTP.
pub const ENCRYPTED_MEDIA_TYPE: &str = "application/didcomm-encrypted+json";

/// Where the transport hands what it cannot decide itself. Each method runs
/// inside the store transaction that also records the message's fate, so
/// the protocol's writes commit with it; `after` collects what to do once
/// that transaction is durable.
pub trait Dispatch: Send + Sync + 'static {
    /// An authenticated inbound message.
    fn handle(
        &self,
        tx: &StoreTx,
        entry: &InboxEntry,
        msg: &Message,
        after: &mut After,
    ) -> Result<()>;

    /// A message `handle` refused with `why`: answer it (or not).
    fn refuse(
        &self,
        tx: &StoreTx,
        entry: &InboxEntry,
        msg: &Message,
        why: &Error,
        after: &mut After,
    ) -> Result<()>;

    /// A queued message of type `msg_type` reached its recipient.
    fn delivered(
        &self,
        tx: &StoreTx,
        entry: &OutboxEntry,
        msg_type: &str,
        after: &mut After,
    ) -> Result<()>;

    /// A delivery attempt failed; `gave_up` when the outbox will not retry.
    fn delivery_failed(
        &self,
        tx: &StoreTx,
        entry: &OutboxEntry,
        gave_up: bool,
        after: &mut After,
    ) -> Result<()>;
}

/// The transport's shared state: the core, the protocols it dispatches to,
/// the intake's transaction batcher and the HTTP client. Cheap to clone.
#[derive(Clone)]
pub struct Transport {
    pub(crate) core: Core,
    inner: Arc<TransportInner>,
}

struct TransportInner {
    dispatch: Arc<dyn Dispatch>,
    intake: inbox::Intake,
    /// Envelopes being decrypted at once, from peers and from strangers.
    unpacks: tokio::sync::Semaphore,
    stranger_unpacks: tokio::sync::Semaphore,
    http: reqwest::Client,
    /// Whether peers' endpoints may be private addresses (see `addresses`).
    private_allowed: bool,
}

impl Transport {
    pub fn new(core: Core, dispatch: Arc<dyn Dispatch>) -> Result<Self> {
        let outbox = &core.config.outbox;
        let mut http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(outbox.send_timeout_ms))
            .connect_timeout(std::time::Duration::from_millis(outbox.connect_timeout_ms))
            // A peer's endpoint answers for itself; following a redirect
            // would post the message wherever the answer points.
            .redirect(reqwest::redirect::Policy::none());
        let private_allowed = core.config.private_destinations_allowed();
        if !private_allowed {
            http = http.dns_resolver(Arc::new(crate::addresses::PublicOnly));
        }
        let http = http
            .build()
            .map_err(|e| Error::Internal(format!("HTTP client: {e}")))?;
        let limits = &core.config.didcomm.limits;
        let unpacks = tokio::sync::Semaphore::new(limits.max_concurrent_unpacks);
        let stranger_unpacks = tokio::sync::Semaphore::new(limits.max_concurrent_stranger_unpacks);
        Ok(Transport {
            core,
            inner: Arc::new(TransportInner {
                dispatch,
                intake: Default::default(),
                unpacks,
                stranger_unpacks,
                http,
                private_allowed,
            }),
        })
    }

    fn dispatch(&self) -> &dyn Dispatch {
        self.inner.dispatch.as_ref()
    }

    /// Opens an envelope: the cheap checks, then decryption. What a
    /// stranger sends (answering an open invitation) and anything large is
    /// decrypted off the async workers, at most
    /// `max_concurrent_stranger_unpacks` and `max_concurrent_unpacks` at a
    /// time, so a flood cannot hold up the control plane or the peers; a
    /// connected peer's small envelope (a fraction of a millisecond) is
    /// opened in place.
    async fn unpack(&self, packed: axum::body::Bytes) -> Result<Unpacked> {
        let envelopes = self.core.envelopes.clone();
        let small = packed.len() <= IN_PLACE;
        let inspected = if small {
            envelopes.inspect(packed)?
        } else {
            blocking(move || envelopes.inspect(packed)).await?
        };
        if small && !inspected.from_stranger {
            return Ok(self.core.envelopes.open(inspected)?);
        }
        let permits = match inspected.from_stranger {
            true => &self.inner.stranger_unpacks,
            false => &self.inner.unpacks,
        };
        let _permit = permits
            .acquire()
            .await
            .map_err(|_| Error::Internal("the unpack semaphore closed".into()))?;
        let envelopes = self.core.envelopes.clone();
        blocking(move || envelopes.open(inspected)).await
    }
}

/// Envelopes up to this size are inspected, and a peer's opened, on the
/// async worker.
const IN_PLACE: usize = 64 * 1024;

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EnvelopeError> + Send + 'static,
) -> Result<T> {
    let done = tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("unpacking panicked: {e}")))?;
    Ok(done?)
}

/// Control-plane calls waiting for a reply in a thread (a ping-response, a
/// disclosure). In memory only: a waiter lost to a restart just times out.
#[derive(Clone, Default)]
pub struct Waiters {
    map: Arc<Mutex<HashMap<String, oneshot::Sender<Message>>>>,
}

impl Waiters {
    pub fn register(&self, thid: &str) -> oneshot::Receiver<Message> {
        let (tx, rx) = oneshot::channel();
        self.map
            .lock()
            .expect("waiters lock")
            .insert(thid.to_string(), tx);
        rx
    }

    pub fn forget(&self, thid: &str) {
        self.map.lock().expect("waiters lock").remove(thid);
    }

    pub fn wake(&self, thid: &str, reply: Message) {
        if let Some(tx) = self.map.lock().expect("waiters lock").remove(thid) {
            let _ = tx.send(reply);
        }
    }
}

#[cfg(test)]
mod tests {
    /// Transport never names a protocol: a plain scan of its sources.
    #[test]
    fn transport_does_not_reach_into_protocols() {
        let root = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src/didcomm"));
        let mut scanned = 0;
        // Built so that this test's own source does not match.
        let banned = [
            format!("{}::", "protocols"),
            format!("issue_{}", "credential"),
        ];
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                scanned += 1;
                for (n, line) in text.lines().enumerate() {
                    assert!(
                        !banned.iter().any(|b| line.contains(b.as_str())),
                        "{}:{}: transport names a protocol: {line}",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
        assert!(scanned >= 6, "scanned only {scanned} files");
    }
}
