//! Structure-aware fuzzing of every protocol handler: messages of every
//! type we speak (and some we do not), with bodies, attachments and thread
//! ids shaped like real ones but filled at random, from the connection's
//! peer, into a wallet with records in several states. A handler must
//! answer Ok or a typed error, never panic; a refusal must be answerable.
//!
//! `cargo test fuzz_` runs the default number of cases (256 each);
//! `PROPTEST_CASES=100000 cargo test --release fuzz_` runs a long pass.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::Protocols;
use crate::after::After;
use crate::didcomm::{Attachment, Dispatch, Message};
use crate::store::{Connection, InboxEntry};
use crate::testing::{TestCore, any_json};

/// A JSON value, or one shaped like a field a handler reads.
fn field(shapes: Vec<Value>) -> impl Strategy<Value = Value> {
    prop_oneof![any_json(), prop::sample::select(shapes)]
}

const TYPES: &[&str] = &[
    "https://didcomm.org/trust-ping/2.0/ping",
    "https://didcomm.org/trust-ping/2.0/ping-response",
    "https://didcomm.org/discover-features/2.0/queries",
    "https://didcomm.org/discover-features/2.0/disclose",
    "https://didcomm.org/report-problem/2.0/problem-report",
    "https://didcomm.org/issue-credential/3.0/propose-credential",
    "https://didcomm.org/issue-credential/3.0/offer-credential",
    "https://didcomm.org/issue-credential/3.0/request-credential",
    "https://didcomm.org/issue-credential/3.0/issue-credential",
    "https://didcomm.org/issue-credential/3.0/ack",
    "https://didcomm.org/issue-credential/3.5/anything",
    "https://didcomm.org/notification/1.0/ack",
    "https://example.org/unknown/1.0/x",
];

fn attachment() -> impl Strategy<Value = Attachment> {
    let data = prop_oneof![
        any_json().prop_map(|j| json!({ "json": j })),
        "[A-Za-z0-9_=+/-]{0,80}".prop_map(|b| json!({ "base64": b })),
        Just(json!({ "base64": "ZXlKaGJHY2lPaUpGWkVSVFFTSjkuZXlKcGMzTWlPaUpoSW4wLmFh" })),
        prop::collection::vec("[ -~]{0,20}", 0..3).prop_map(|l| json!({ "links": l })),
        any_json().prop_map(|j| json!({ "x": j })),
    ];
    let format = prop_oneof![
        Just(None),
        Just(Some("prism/jwt".to_string())),
        Just(Some("vc+jwt".to_string())),
        "[a-z/+]{0,12}".prop_map(Some),
    ];
    (data, format).prop_map(|(data, format)| Attachment {
        id: None,
        media_type: None,
        format,
        data: data.as_object().cloned().unwrap_or_default(),
        extra: Map::new(),
    })
}

/// A message from the peer: a type, a body with fields handlers read,
/// attachments, thread ids (one of the existing threads or random).
fn message(threads: Vec<String>) -> impl Strategy<Value = Message> {
    let body = (
        field(vec![json!(true), json!(false)]),
        field(vec![
            json!([{ "feature-type": "protocol", "match": "*" }]),
            json!([{ "feature_type": "Protocol", "match": "https://didcomm.org/*" }]),
            json!([{ "feature-type": "protocol", "match": "*".repeat(300) }]),
        ]),
        field(vec![json!("e.p.x"), json!("e.m.msg.unknown-thread"), json!("w.m.x")]),
        field(vec![
            json!({ "body": { "attributes": [{ "name": "a", "value": "b" }] } }),
            json!({ "attributes": [{ "name": "a", "value": "e30", "media_type": "application/json" }] }),
            json!({ "body": { "attributes": [{ "name": 1 }] } }),
        ]),
        field(vec![json!(["a"]), json!([1, 2]), json!("{1}")]),
    )
        .prop_map(|(rr, queries, code, preview, args)| {
            json!({
                "response_requested": rr, "queries": queries, "code": code,
                "comment": "{1} {2}", "args": args, "credential_preview": preview,
            })
        });
    let thread = prop_oneof![
        Just(None),
        prop::sample::select(threads).prop_map(Some),
        "[a-z0-9-]{1,36}".prop_map(Some),
    ];
    (
        prop::sample::select(TYPES),
        body,
        prop::collection::vec(attachment(), 0..3),
        thread.clone(),
        thread,
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(typ, body, attachments, thid, pthid, expires)| {
            let mut m = Message::new(typ, body);
            m.thid = thid;
            m.pthid = pthid;
            m.attachments = attachments;
            m.expires_time = expires;
            m
        })
}

/// A core with wallets "issuer" and "holder" connected, and records of
/// both roles in several states.
struct Bench {
    t: TestCore,
    /// The holder's connection (its peer is the issuer) and the issuer's.
    holder: Connection,
    issuer: Connection,
    threads: Vec<String>,
}

fn bench() -> Bench {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let t = crate::testing::core();
        let (issuer, holder) = t.connect("issuer", "holder").await;
        let mut threads = Vec::new();
        for (automatic, accept) in [(false, false), (false, true), (true, true)] {
            let spec = super::issue_credential::OfferSpec {
                connection_id: issuer.id.clone(),
                claims_json: json!({"name": "Alice"}).to_string(),
                automatic_issuance: automatic,
                ..Default::default()
            };
            let offer = t
                .protocols
                .issuance
                .create_offer("issuer", &spec)
                .await
                .unwrap();
            t.drain().await;
            if accept {
                let h = t
                    .core
                    .store
                    .record_by_thid("holder", &offer.thid)
                    .unwrap()
                    .unwrap();
                t.protocols
                    .issuance
                    .accept_offer("holder", &h.id, None)
                    .await
                    .unwrap();
                t.drain().await;
            }
            threads.push(offer.thid);
        }
        Bench {
            t,
            holder,
            issuer,
            threads,
        }
    })
}

/// Hands `msg` to the protocols as if `conn`'s peer sent it, in a
/// transaction; on refusal, lets them answer it. Never panics, or the test
/// fails.
fn deliver(protocols: &Protocols, b: &Bench, conn: &Connection, mut msg: Message) {
    let peer = conn.their_did.clone().unwrap();
    msg.from = Some(peer.clone());
    msg.to = vec![conn.our_did.clone()];
    let entry = InboxEntry {
        wallet_id: conn.wallet_id.clone(),
        recipient: conn.our_did.clone(),
        sender: Some(peer),
        message: msg.to_json(),
        received_at_ms: 0,
    };
    let handled = b.t.core.store.transact(|tx| {
        let mut after = After::default();
        protocols.handle(tx, &entry, &msg, &mut after)?;
        Ok(after)
    });
    if let Err(why) = handled {
        let _answer = b.t.core.store.transact(|tx| {
            let mut after = After::default();
            protocols.refuse(tx, &entry, &msg, &why, &mut after)?;
            Ok(after)
        });
    }
}

thread_local! {
    static BENCH: Bench = bench();
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn fuzz_protocol_handlers_never_panic(
        msg in BENCH.with(|b| message(b.threads.clone())),
        to_holder in any::<bool>(),
    ) {
        BENCH.with(|b| {
            let conn = if to_holder { &b.holder } else { &b.issuer };
            deliver(&b.t.protocols, b, conn, msg);
        });
    }
}
