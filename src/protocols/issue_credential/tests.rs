//! Both roles in one core (two wallets), messages pumped by hand, so each
//! refusal can be checked against the records it must leave alone.

use serde_json::json;

use super::*;
use crate::store::RecordState::*;
use crate::testing::{self, TestCore};

fn spec(conn: &Connection, automatic: bool) -> OfferSpec {
    OfferSpec {
        connection_id: conn.id.clone(),
        claims_json: json!({"name": "Alice", "level": 3}).to_string(),
        types: vec!["TestCredential".into()],
        validity_period_secs: 600,
        automatic_issuance: automatic,
        ..Default::default()
    }
}

fn holder_record(t: &TestCore, thid: &str) -> CredentialRecord {
    t.core
        .store
        .record_by_thid("holder", thid)
        .unwrap()
        .expect("holder record")
}

/// Issuer wallet "issuer", holder wallet "holder": an offer accepted by the
/// holder. Returns the issuer's record after the request arrived.
async fn offered_and_requested(
    t: &TestCore,
    automatic: bool,
) -> (Connection, Connection, CredentialRecord) {
    let (ci, ch) = t.connect("issuer", "holder").await;
    let offer = create_offer(&t.core, "issuer", &spec(&ci, automatic))
        .await
        .unwrap();
    t.drain().await;
    let h = holder_record(t, &offer.thid);
    assert_eq!(h.state, OfferReceived);
    accept_offer(&t.core, "holder", &h.id, None).await.unwrap();
    t.drain().await;
    let rec = t.core.store.record("issuer", &offer.id).unwrap();
    (ci, ch, rec)
}

#[tokio::test]
async fn automatic_issuance_runs_to_the_end() {
    let t = testing::core();
    let (_, _, rec) = offered_and_requested(&t, true).await;
    assert_eq!(rec.state, CredentialSent, "{:?}", rec.problem);
    assert!(rec.ack_received);
    let h = holder_record(&t, &rec.thid);
    assert_eq!(h.state, CredentialReceived);
    let c = t
        .core
        .store
        .credential("holder", h.credential_id.as_deref().unwrap())
        .unwrap();
    assert_eq!(c.issuer, rec.issuer_did);
    assert_eq!(c.claims["level"], 3);
}
