//! Bulk offers per second stored: `CreateOffers` calls of 1,000 on the
//! pair's connection, one after another, timed to their answers (each
//! answer comes once its offers are durable; delivery follows at the flow
//! rate and is not timed here).

use std::time::Instant;

use serde::Serialize;

use super::Result;
use crate::harness::{Clients, HarnessError};
use crate::rpc::proto;

const BATCH: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct Bulk {
    pub offers: usize,
    pub batch: usize,
    pub seconds: f64,
    pub offers_per_sec: f64,
}

/// Stores `batches` × 1,000 offers to the holder on `connection`.
pub async fn measure(ic: &Clients, connection: &str, batches: usize) -> Result<Bulk> {
    let offer = |n: usize| proto::CreateOfferRequest {
        connection_id: connection.to_string(),
        claims_json: format!(r#"{{"name":"bulk {n}","level":{}}}"#, n % 5),
        types: vec!["BenchCredential".into()],
        correlation_id: format!("bulk-{n}"),
        ..Default::default()
    };
    let started = Instant::now();
    let mut stored = 0;
    for b in 0..batches {
        let r = ic
            .issuance
            .clone()
            .create_offers(proto::CreateOffersRequest {
                offers: (b * BATCH..(b + 1) * BATCH).map(offer).collect(),
                ..Default::default()
            })
            .await
            .map_err(HarnessError::from)?
            .into_inner();
        if let Some(f) = r.failed.first() {
            return Err(HarnessError::Rpc(tonic::Status::internal(format!(
                "bulk offer {} failed: {} {}",
                f.index, f.error_code, f.error
            )))
            .into());
        }
        stored += r.created.len();
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Bulk {
        offers: stored,
        batch: BATCH,
        seconds,
        offers_per_sec: stored as f64 / seconds,
    })
}
