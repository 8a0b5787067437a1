//! Discover Features 2.0: we disclose the protocols we implement.

use serde_json::{Value, json};

use crate::after::After;
use crate::didcomm::{Message, outbox};
use crate::error::Result;
use crate::store::{Connection, StoreTx};

pub const QUERIES: &str = "https://didcomm.org/discover-features/2.0/queries";
pub const DISCLOSE: &str = "https://didcomm.org/discover-features/2.0/disclose";

/// The protocols this agent speaks.
pub const PROTOCOLS: &[&str] = &[
    "https://didcomm.org/trust-ping/2.0",
    "https://didcomm.org/discover-features/2.0",
    "https://didcomm.org/out-of-band/2.0",
    "https://didcomm.org/report-problem/2.0",
];

pub fn query(pattern: &str) -> Message {
    Message::new(
        QUERIES,
        json!({ "queries": [{ "feature-type": "protocol", "match": pattern }] }),
    )
}

/// `*` matches any run of characters.
fn matches(pattern: &str, id: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == id,
        Some((head, tail)) => {
            id.starts_with(head)
                && (head.len()..=id.len())
                    .any(|i| id.is_char_boundary(i) && matches(tail, &id[i..]))
        }
    }
}

pub fn on_queries(tx: &StoreTx, conn: &Connection, msg: &Message, after: &mut After) -> Result<()> {
    let queries = msg.body["queries"].as_array().cloned().unwrap_or_default();
    let disclosures: Vec<Value> = PROTOCOLS
        .iter()
        .filter(|id| {
            queries.iter().any(|q| {
                q["feature-type"] == "protocol"
                    && q["match"].as_str().is_some_and(|p| matches(p, id))
            })
        })
        .map(|id| json!({ "feature-type": "protocol", "id": id }))
        .collect();
    let reply = msg.reply(DISCLOSE, json!({ "disclosures": disclosures }));
    let their = conn.their_did.as_deref().unwrap_or_default();
    outbox::enqueue(tx, after, &conn.wallet_id, &conn.our_did, their, &reply)
}

/// The protocol ids in a disclose message.
pub fn disclosed(msg: &Message) -> Vec<String> {
    msg.body["disclosures"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|x| x["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards() {
        assert!(matches("*", "https://didcomm.org/trust-ping/2.0"));
        assert!(matches(
            "https://didcomm.org/trust-ping/*",
            "https://didcomm.org/trust-ping/2.0"
        ));
        assert!(!matches(
            "https://didcomm.org/issue-credential/*",
            "https://didcomm.org/trust-ping/2.0"
        ));
        assert!(matches(
            "https://didcomm.org/trust-ping/2.0",
            "https://didcomm.org/trust-ping/2.0"
        ));
        assert!(!matches(
            "https://didcomm.org/trust-ping/2.",
            "https://didcomm.org/trust-ping/2.0"
        ));
    }
}
