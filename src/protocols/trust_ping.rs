//! Trust Ping 2.0.

use serde_json::json;

use crate::after::After;
use crate::didcomm::{Message, outbox};
use crate::error::Result;
use crate::store::{Connection, StoreTx};

pub const PING: &str = "https://didcomm.org/trust-ping/2.0/ping";
pub const PING_RESPONSE: &str = "https://didcomm.org/trust-ping/2.0/ping-response";

pub fn ping(response_requested: bool) -> Message {
    Message::new(PING, json!({ "response_requested": response_requested }))
}

pub fn on_ping(tx: &StoreTx, conn: &Connection, msg: &Message, after: &mut After) -> Result<()> {
    if msg.body.get("response_requested").and_then(|v| v.as_bool()) == Some(false) {
        return Ok(());
    }
    let their = conn.their_did.as_deref().unwrap_or_default();
    let response = msg.reply(PING_RESPONSE, json!({}));
    outbox::enqueue(tx, after, &conn.wallet_id, &conn.our_did, their, &response)
}
