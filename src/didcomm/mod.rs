//! DIDComm v2.1: envelopes, the durable inbox (`POST /didcomm`) and the
//! durable outbox with its delivery worker.

mod envelope;
pub mod http;
pub mod inbox;
pub mod limits;
mod message;
pub mod outbox;

pub use envelope::{EnvelopeError, Envelopes, Unpacked};
pub use message::{Attachment, Message};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The media type of encrypted DIDComm messages on HTTP.
pub const ENCRYPTED_MEDIA_TYPE: &str = "application/didcomm-encrypted+json";

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
