//! Revocations and verifications per second, on the pair the flow levels
//! ran on: the issuer revokes credentials those flows issued (one call
//! each from many callers, then in bulk calls), and both agents verify a
//! credential the holder received — the issuer against its own list (the
//! committed bit), the holder against the issuer's list fetched over HTTP
//! and reused while its `Cache-Control` allows.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use super::Result;
use crate::harness::{Clients, HarnessError};
use crate::rpc::proto;

/// Callers revoking or verifying at once.
const CONCURRENCY: usize = 10;
/// Ids per `RevokeCredentials` call.
const BULK: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct Revocation {
    /// `RevokeCredential`, one id per call, `CONCURRENCY` callers.
    pub revoked_one_by_one: usize,
    pub revocations_per_sec: f64,
    /// `RevokeCredentials` with `BULK` ids per call, one caller.
    pub revoked_in_bulk: usize,
    pub bulk_revocations_per_sec: f64,
    pub verifications: usize,
    /// `VerifyCredential` at the issuer: its own list, read from the store.
    pub verifications_per_sec_own_list: f64,
    /// At the holder: the issuer's list over HTTP, cached.
    pub verifications_per_sec_fetched_list: f64,
}

/// Revokes up to `revocations` of the credentials the issuer issued (half
/// one by one, half in bulk) and verifies `verifications` times on each side.
pub async fn measure(
    ic: &Clients,
    hc: &Clients,
    revocations: usize,
    verifications: usize,
) -> Result<Revocation> {
    let held = hc
        .holder
        .clone()
        .list_credentials(proto::ListCredentialsRequest {
            page: Some(proto::PageRequest {
                page_size: 1,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map_err(HarnessError::from)?
        .into_inner()
        .credentials;
    let jwt = held
        .first()
        .map(|c| c.jwt.clone())
        .ok_or_else(|| HarnessError::Timeout("the holder holds no credential".into()))?;
    // Verified before any revocation, and never revoked: the credential of
    // the holder's first page is skipped below.
    let own = verify(ic, &jwt, verifications).await?;
    let fetched = verify(hc, &jwt, verifications).await?;

    let mut ids = issued(ic, revocations + 1).await?;
    ids.retain(|id| Some(id) != held.first().map(|c| &c.id));
    ids.truncate(revocations);
    let bulk_ids = ids.split_off(ids.len() / 2);

    let started = Instant::now();
    let mut callers = JoinSet::new();
    for caller in 0..CONCURRENCY {
        let mine: Vec<String> = ids
            .iter()
            .skip(caller)
            .step_by(CONCURRENCY)
            .cloned()
            .collect();
        let mut api = ic.issuance.clone();
        callers.spawn(async move {
            for id in mine {
                api.revoke_credential(proto::RevokeCredentialRequest {
                    id,
                    reason: "bench".into(),
                    ..Default::default()
                })
                .await?;
            }
            Ok::<_, tonic::Status>(())
        });
    }
    while let Some(done) = callers.join_next().await {
        done.expect("a revoking task panicked")
            .map_err(HarnessError::from)?;
    }
    let one_by_one = started.elapsed();

    let started = Instant::now();
    for chunk in bulk_ids.chunks(BULK) {
        ic.issuance
            .clone()
            .revoke_credentials(proto::RevokeCredentialsRequest {
                ids: chunk.to_vec(),
                reason: "bench".into(),
                ..Default::default()
            })
            .await
            .map_err(HarnessError::from)?;
    }
    let bulk = started.elapsed();
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    Ok(Revocation {
        revoked_one_by_one: ids.len(),
        revocations_per_sec: rate(ids.len(), one_by_one),
        revoked_in_bulk: bulk_ids.len(),
        bulk_revocations_per_sec: rate(bulk_ids.len(), bulk),
        verifications,
        verifications_per_sec_own_list: rate(verifications, own),
        verifications_per_sec_fetched_list: rate(verifications, fetched),
    })
}

/// Verifies `jwt` `n` times from `CONCURRENCY` callers; each must be valid.
async fn verify(c: &Clients, jwt: &str, n: usize) -> Result<Duration> {
    let started = Instant::now();
    let mut callers = JoinSet::new();
    for caller in 0..CONCURRENCY {
        let mut v = c.verifier.clone();
        let jwt = jwt.to_string();
        let mine = (caller..n).step_by(CONCURRENCY).count();
        callers.spawn(async move {
            for _ in 0..mine {
                let r = v
                    .verify_credential(proto::VerifyCredentialRequest {
                        jwt: jwt.clone(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                if !r.valid {
                    return Err(tonic::Status::internal(format!("not valid: {r:?}")));
                }
            }
            Ok(())
        });
    }
    while let Some(done) = callers.join_next().await {
        done.expect("a verifying task panicked")
            .map_err(HarnessError::from)?;
    }
    Ok(started.elapsed())
}

/// Credential ids of up to `n` of the issuer's records.
async fn issued(ic: &Clients, n: usize) -> Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    let mut token = String::new();
    while ids.len() < n {
        let page = ic
            .issuance
            .clone()
            .list_records(proto::ListRecordsRequest {
                role: proto::Role::Issuer as i32,
                page: Some(proto::PageRequest {
                    page_size: 100,
                    page_token: token,
                }),
                ..Default::default()
            })
            .await
            .map_err(HarnessError::from)?
            .into_inner();
        ids.extend(
            page.records
                .into_iter()
                .map(|r| r.credential_id)
                .filter(|id| !id.is_empty()),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    ids.truncate(n);
    Ok(ids)
}
