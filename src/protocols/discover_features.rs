//! Discover Features 2.0: we disclose the protocols we implement.

use serde_json::{Value, json};

use crate::after::After;
use crate::didcomm::{Message, outbox};
use crate::error::Result;
use crate::store::{Connection, StoreTx};

pub const QUERIES: &str = "https://didcomm.org/discover-features/2.0/queries";
pub const DISCLOSE: &str = "https://didcomm.org/discover-features/2.0/disclose";

/// The protocols this agent speaks, with the roles it plays in each.
pub const PROTOCOLS: &[(&str, &[&str])] = &[
    (
        "https://didcomm.org/trust-ping/2.0",
        &["sender", "receiver"],
    ),
    (
        "https://didcomm.org/discover-features/2.0",
        &["requester", "responder"],
    ),
    (
        "https://didcomm.org/out-of-band/2.0",
        &["sender", "receiver"],
    ),
    (
        "https://didcomm.org/report-problem/2.0",
        &["notifier", "notified"],
    ),
    (
        "https://didcomm.org/issue-credential/3.0",
        &["issuer", "holder"],
    ),
    (
        "https://didcomm.org/revocation_notification/2.0",
        &["issuer", "holder"],
    ),
];

/// The goal codes our invitations and offers carry.
pub const GOAL_CODES: &[&str] = &["issue-vc"];

pub fn query(pattern: &str) -> Message {
    Message::new(
        QUERIES,
        json!({ "queries": [{ "feature-type": "protocol", "match": pattern }] }),
    )
}

/// `*` matches any run of characters.
fn matches(pattern: &str, id: &str) -> bool {
    glob(pattern, id).0
}

/// Greedy with one backtrack point: at most (pattern + 1) × (id + 1)
/// steps, so a peer's pattern of many `*` costs what its length costs, not
/// exponentially more. Returns the answer and the steps taken.
fn glob(pattern: &str, id: &str) -> (bool, usize) {
    let (p, s) = (pattern.as_bytes(), id.as_bytes());
    let (mut pi, mut si, mut steps) = (0, 0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        steps += 1;
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((star_p, star_s)) = star {
            pi = star_p + 1;
            si = star_s + 1;
            star = Some((star_p, star_s + 1));
        } else {
            return (false, steps);
        }
    }
    (p[pi..].iter().all(|&c| c == b'*'), steps)
}

/// At most this many queries are answered, each pattern at most this long.
const MAX_QUERIES: usize = 16;
const MAX_PATTERN: usize = 256;

/// A query's feature type, as the spec spells it (`feature-type`,
/// `protocol`) or as Affinidi's stack does (`feature_type`, `Protocol`).
fn feature_type(query: &Value) -> String {
    query
        .get("feature-type")
        .or_else(|| query.get("feature_type"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase()
}

pub fn on_queries(tx: &StoreTx, conn: &Connection, msg: &Message, after: &mut After) -> Result<()> {
    let reply = msg.reply(DISCLOSE, json!({ "disclosures": disclose(&msg.body) }));
    let their = conn.their_did.as_deref().unwrap_or_default();
    outbox::enqueue(tx, after, &conn.wallet_id, &conn.our_did, their, &reply)
}

/// What a queries body gets: each protocol (with our roles) and goal code
/// that one of its first queries matches.
fn disclose(body: &Value) -> Vec<Value> {
    let queries: Vec<&Value> = body["queries"]
        .as_array()
        .map(|q| q.iter().take(MAX_QUERIES).collect())
        .unwrap_or_default();
    let asked = |kind: &str, id: &str| {
        queries.iter().any(|q| {
            feature_type(q) == kind
                && q["match"]
                    .as_str()
                    .is_some_and(|p| p.len() <= MAX_PATTERN && matches(p, id))
        })
    };
    let protocols = PROTOCOLS
        .iter()
        .filter(|(id, _)| asked("protocol", id))
        .map(|(id, roles)| json!({ "feature-type": "protocol", "id": id, "roles": roles }));
    let goals = GOAL_CODES
        .iter()
        .filter(|id| asked("goal-code", id))
        .map(|id| json!({ "feature-type": "goal-code", "id": id }));
    protocols.chain(goals).collect()
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
    use super::{disclose, matches};
    use serde_json::json;

    /// Every protocol with its roles, goal codes on their own query, and
    /// the spelling Affinidi's stack uses for the feature type.
    #[test]
    fn disclosures_name_roles_and_goal_codes() {
        let all = disclose(&json!({"queries": [{"feature-type": "protocol", "match": "*"}]}));
        let ids: Vec<&str> = all.iter().map(|d| d["id"].as_str().unwrap()).collect();
        assert!(
            ids.contains(&"https://didcomm.org/issue-credential/3.0"),
            "{ids:?}"
        );
        assert_eq!(ids.len(), super::PROTOCOLS.len());
        let affinidi = disclose(&json!({"queries": [
            {"feature_type": "Protocol", "match": "https://didcomm.org/issue-credential/*"},
            {"feature-type": "goal-code", "match": "issue-*"},
        ]}));
        assert_eq!(
            affinidi,
            [
                json!({"feature-type": "protocol", "id": "https://didcomm.org/issue-credential/3.0", "roles": ["issuer", "holder"]}),
                json!({"feature-type": "goal-code", "id": "issue-vc"}),
            ]
        );
        assert!(
            disclose(&json!({"queries": [{"feature-type": "header", "match": "*"}]})).is_empty()
        );
        assert!(disclose(&json!({})).is_empty());
    }

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
        assert!(matches("*ping*", "https://didcomm.org/trust-ping/2.0"));
        assert!(matches("h*s*/*/2.*", "https://didcomm.org/trust-ping/2.0"));
        assert!(!matches("*pong*", "https://didcomm.org/trust-ping/2.0"));
        assert!(matches("", "") && !matches("", "x") && matches("**", ""));
    }

    /// Many stars against a long id that does not match: work bounded by
    /// the product of the lengths (the old recursive matcher took tens of
    /// seconds for 9 stars).
    #[test]
    fn many_wildcards_cost_little() {
        let pattern = format!("{}b", "*a".repeat(100));
        let id = "a".repeat(2_000);
        let (matched, steps) = super::glob(&pattern, &id);
        assert!(!matched);
        assert!(
            steps <= (pattern.len() + 1) * (id.len() + 1),
            "{steps} steps"
        );
    }
}
