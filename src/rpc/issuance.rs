use std::time::Duration;

use tonic::{Request, Response, Status};

use super::proto::{self, issuance_service_server::IssuanceService};
use super::{query, status};
use crate::Core;
use crate::error::Error;
use crate::protocols::issue_credential::{self, OfferSpec, Revoked};
use crate::search::Kind;
use crate::store::{self, RecordState, Role};

pub struct Issuance(pub Core, pub issue_credential::Issuance);

impl Issuance {
    /// Runs an action on one record in the caller's wallet (`wallet_id`
    /// checked against the token) and answers with the record.
    async fn on_record<F>(
        &self,
        wallet_id: &str,
        act: impl FnOnce(String) -> F,
    ) -> Result<Response<proto::CredentialRecord>, Status>
    where
        F: std::future::Future<Output = crate::error::Result<store::CredentialRecord>>,
    {
        let wallet = super::auth::wallet(&self.0, wallet_id)?;
        let rec = act(wallet).await.map_err(status)?;
        Ok(Response::new(record_to_proto(&self.0, rec)))
    }
}

/// Longest a custodial call may wait, and its default.
const MAX_WAIT_MS: u32 = 60_000;
const DEFAULT_WAIT_MS: u32 = 30_000;

pub fn state_to_proto(s: RecordState) -> proto::RecordState {
    // The proto enum lists the states in RecordState::ALL's order, from 1.
    let i = RecordState::ALL.iter().position(|x| *x == s).unwrap_or(0);
    proto::RecordState::try_from(i as i32 + 1).unwrap_or_default()
}

/// None for UNSPECIFIED (no filter); an unknown number is an error.
pub fn state_from_proto(v: i32) -> Result<Option<RecordState>, Status> {
    match v {
        0 => Ok(None),
        n => RecordState::ALL
            .get(n as usize - 1)
            .copied()
            .map(Some)
            .ok_or_else(|| status(Error::InvalidArgument(format!("unknown record state {n}")))),
    }
}

pub fn role_to_proto(r: Role) -> proto::Role {
    match r {
        Role::Issuer => proto::Role::Issuer,
        Role::Holder => proto::Role::Holder,
    }
}

pub fn role_from_proto(v: i32) -> Result<Option<Role>, Status> {
    match proto::Role::try_from(v) {
        Ok(proto::Role::Unspecified) => Ok(None),
        Ok(proto::Role::Issuer) => Ok(Some(Role::Issuer)),
        Ok(proto::Role::Holder) => Ok(Some(Role::Holder)),
        Err(_) => Err(status(Error::InvalidArgument(format!("unknown role {v}")))),
    }
}

pub fn record_to_proto(core: &Core, r: store::CredentialRecord) -> proto::CredentialRecord {
    let domain = r.audience().to_string();
    let revocation = r.revocation.unwrap_or_default();
    proto::CredentialRecord {
        status_list_credential: r
            .status
            .as_ref()
            .map(|s| crate::status::list_url(&core.endpoint, &s.list_id))
            .unwrap_or_default(),
        status_list_index: r.status.map_or(0, |s| s.index),
        revoked_at_ms: revocation.at_ms,
        revocation_reason: revocation.reason,
        revoked_by: revocation.by,
        template_id: r.template_id.unwrap_or_default(),
        correlation_id: r.correlation_id.unwrap_or_default(),
        reference_id: r.reference_id.unwrap_or_default(),
        collection_id: r.collection_id.unwrap_or_default(),
        data_deleted_at_ms: r.data_deleted_at_ms.unwrap_or_default(),
        id: r.id,
        wallet_id: r.wallet_id,
        role: role_to_proto(r.role) as i32,
        state: state_to_proto(r.state) as i32,
        version: r.version,
        thid: r.thid,
        connection_id: r.connection_id,
        our_did: r.our_did,
        their_did: r.their_did,
        claims_json: shown(|| serde_json::Value::Object(r.claims).to_string()),
        types: r.types,
        schema_id: r.schema_id.unwrap_or_default(),
        validity_period_secs: r.validity_period_secs,
        automatic_issuance: r.automatic_issuance,
        idempotency_key: r.idempotency_key.unwrap_or_default(),
        issuer_did: r.issuer_did,
        subject_did: r.subject_did.unwrap_or_default(),
        credential_id: r.credential_id.unwrap_or_default(),
        ack_received: r.ack_received,
        domain,
        format: r.format,
        ack_requested: r.ack_requested,
        created_by: r.created_by,
        updated_by: r.updated_by,
        problem: r.problem.unwrap_or_default(),
        comment: r.comment.unwrap_or_default(),
        meta_retries: r.meta_retries,
        meta_next_retry_ms: r.meta_next_retry_ms.unwrap_or_default(),
        meta_last_failure: r.meta_last_failure.unwrap_or_default(),
        expires_at_ms: r.expires_at_ms.unwrap_or_default(),
        created_at_ms: r.created_at_ms,
        updated_at_ms: r.updated_at_ms,
    }
}

/// Claims and credential JWTs are left out for an auditor's token.
fn shown(value: impl FnOnce() -> String) -> String {
    if super::auth::caller().sees_claims() {
        value()
    } else {
        String::new()
    }
}

pub fn credential_to_proto(c: store::StoredCredential) -> proto::Credential {
    use crate::verify::held::{HeldStatus, status_of};
    let status = match status_of(&c, crate::now_secs()) {
        HeldStatus::Active => proto::CredentialStatus::Active,
        HeldStatus::Expired => proto::CredentialStatus::Expired,
        HeldStatus::Revoked => proto::CredentialStatus::Revoked,
    };
    proto::Credential {
        status: status.into(),
        status_checked_at_ms: c.status_checked_at_ms.unwrap_or_default(),
        status_check_error: c.status_check_error.unwrap_or_default(),
        id: c.id,
        wallet_id: c.wallet_id,
        record_id: c.record_id,
        thid: c.thid,
        issuer: c.issuer,
        subject: c.subject,
        types: c.types,
        claims_json: shown(|| serde_json::Value::Object(c.claims).to_string()),
        jwt: shown(|| c.jwt),
        not_before: c.not_before,
        expires: c.expires.unwrap_or_default(),
        received_at_ms: c.received_at_ms,
        created_by: c.created_by,
        revoked: c.revocation.is_some(),
        revoked_at_ms: c.revocation.as_ref().map_or(0, |r| r.at_ms),
        revocation_reason: c.revocation.map(|r| r.reason).unwrap_or_default(),
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// A claim link's answer: its record, URL and QR codes. An auditor sees
/// the record only (the link hands out the offer).
fn claim_link(core: &Core, rec: store::CredentialRecord) -> Result<proto::ClaimLink, Status> {
    let url = issue_credential::link_of(&rec).map_err(status)?.to_string();
    let record = Some(record_to_proto(core, rec));
    if !super::auth::caller().sees_claims() {
        return Ok(proto::ClaimLink {
            record,
            ..Default::default()
        });
    }
    Ok(proto::ClaimLink {
        record,
        qr_png: crate::qr::png(&url).map_err(status)?,
        qr_svg: crate::qr::svg(&url).map_err(status)?,
        invitation_url: url,
    })
}

/// A CreateOffer request as the library's offer.
fn offer_spec(r: proto::CreateOfferRequest) -> OfferSpec {
    OfferSpec {
        connection_id: r.connection_id,
        claims_json: r.claims_json,
        types: r.types,
        schema_id: non_empty(r.schema_id),
        validity_period_secs: r.validity_period_secs,
        automatic_issuance: r.automatic_issuance,
        idempotency_key: non_empty(r.idempotency_key),
        issuer_did: non_empty(r.issuer_did),
        expires_in_secs: r.expires_in_secs,
        comment: non_empty(r.comment),
        format: non_empty(r.format),
        template_id: non_empty(r.template_id),
        correlation_id: non_empty(r.correlation_id),
        reference_id: non_empty(r.reference_id),
        collection_id: non_empty(r.collection_id),
        refuse_duplicate: r.refuse_duplicate,
        draft: r.draft,
        credential_expires_at: (r.credential_expires_at > 0).then_some(r.credential_expires_at),
    }
}

/// A filter on an optional field: empty matches anything.
#[tonic::async_trait]
impl IssuanceService for Issuance {
    async fn create_offer(
        &self,
        request: Request<proto::CreateOfferRequest>,
    ) -> Result<Response<proto::CredentialRecord>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let spec = offer_spec(r);
        let rec = self.1.create_offer(&wallet, &spec).await.map_err(status)?;
        Ok(Response::new(record_to_proto(&self.0, rec)))
    }

    async fn create_offers(
        &self,
        request: Request<proto::CreateOffersRequest>,
    ) -> Result<Response<proto::CreateOffersResponse>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        if let Some(i) = r
            .offers
            .iter()
            .position(|o| !o.wallet_id.is_empty() && o.wallet_id != wallet)
        {
            return Err(status(Error::InvalidArgument(format!(
                "offers[{i}] names wallet {}, not {wallet}",
                r.offers[i].wallet_id
            ))));
        }
        let specs = r.offers.into_iter().map(offer_spec).collect();
        let key = non_empty(r.idempotency_key);
        let results = self
            .1
            .create_offers(&wallet, specs, key.as_deref())
            .await
            .map_err(status)?;
        let mut response = proto::CreateOffersResponse::default();
        for (i, result) in results.into_iter().enumerate() {
            let index = i as u32;
            match result {
                Ok(rec) => response.created.push(proto::OfferOutcome {
                    index,
                    record: Some(record_to_proto(&self.0, rec)),
                    ..Default::default()
                }),
                Err(e) => {
                    let s = status(e);
                    response.failed.push(proto::OfferOutcome {
                        index,
                        record: None,
                        error_code: s
                            .metadata()
                            .get("x-agentd-reason")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("INTERNAL")
                            .to_string(),
                        error: s.message().to_string(),
                    })
                }
            }
        }
        Ok(Response::new(response))
    }

    async fn list_records(
        &self,
        request: Request<proto::ListRecordsRequest>,
    ) -> Result<Response<proto::ListRecordsResponse>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let kind = Kind::Records;
        let mut and = Vec::new();
        if let Some(role) = role_from_proto(r.role)? {
            and.push(query::eq(kind, "role", format!("{role:?}"))?);
        }
        if let Some(state) = state_from_proto(r.state)? {
            and.push(query::eq(kind, "state", format!("{state:?}"))?);
        }
        for (field, value) in [
            ("thid", &r.thid),
            ("connection_id", &r.connection_id),
            ("template_id", &r.template_id),
            ("correlation_id", &r.correlation_id),
            ("reference_id", &r.reference_id),
            ("collection_id", &r.collection_id),
        ] {
            if !value.is_empty() {
                and.push(query::eq(kind, field, value)?);
            }
        }
        let q = query::query(kind, r.query.as_ref(), and)?;
        let found =
            query::page::<store::CredentialRecord>(&self.0.store, &wallet, q, &r.page).await?;
        Ok(Response::new(proto::ListRecordsResponse {
            total: query::total(&found),
            records: found
                .items
                .into_iter()
                .map(|rec| record_to_proto(&self.0, rec))
                .collect(),
            next_page_token: found.next_token,
        }))
    }

    async fn get_record(
        &self,
        request: Request<proto::GetRecordRequest>,
    ) -> Result<Response<proto::CredentialRecord>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let rec = self.0.store.record(&wallet, &r.record_id).map_err(status)?;
        Ok(Response::new(record_to_proto(&self.0, rec)))
    }

    async fn issue_credential(
        &self,
        request: Request<proto::IssueCredentialRequest>,
    ) -> Result<Response<proto::CredentialRecord>, Status> {
        let r = request.into_inner();
        self.on_record(&r.wallet_id, async |w| self.1.issue(&w, &r.record_id).await)
            .await
    }

    async fn update_draft(
        &self,
        request: Request<proto::UpdateDraftRequest>,
    ) -> Result<Response<proto::CredentialRecord>, Status> {
        let r = request.into_inner();
        let edit = issue_credential::DraftEdit {
            claims_json: r.claims_json,
            validity_period_secs: r.validity_period_secs,
            expires_in_secs: r.expires_in_secs,
            comment: r.comment,
        };
        self.on_record(&r.wallet_id, async |w| {
            self.1.update_draft(&w, &r.record_id, edit).await
        })
        .await
    }

    async fn send_offer(
        &self,
        request: Request<proto::RecordRequest>,
    ) -> Result<Response<proto::CredentialRecord>, Status> {
        let r = request.into_inner();
        self.on_record(&r.wallet_id, async |w| {
            self.1.send_draft(&w, &r.record_id).await
        })
        .await
    }

    async fn discard_draft(
        &self,
        request: Request<proto::RecordRequest>,
    ) -> Result<Response<proto::CredentialRecord>, Status> {
        let r = request.into_inner();
        self.on_record(&r.wallet_id, async |w| {
            self.1.discard_draft(&w, &r.record_id).await
        })
        .await
    }

    async fn create_claim_link(
        &self,
        request: Request<proto::CreateClaimLinkRequest>,
    ) -> Result<Response<proto::ClaimLink>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let spec = offer_spec(r.offer.unwrap_or_default());
        let rec = self
            .1
            .create_claim_link(&wallet, &spec, &r.label)
            .await
            .map_err(status)?;
        claim_link(&self.0, rec).map(Response::new)
    }

    async fn get_claim_link(
        &self,
        request: Request<proto::RecordRequest>,
    ) -> Result<Response<proto::ClaimLink>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let rec = self.0.store.record(&wallet, &r.record_id).map_err(status)?;
        claim_link(&self.0, rec).map(Response::new)
    }

    async fn delete_record_data(
        &self,
        request: Request<proto::RecordRequest>,
    ) -> Result<Response<proto::CredentialRecord>, Status> {
        let r = request.into_inner();
        self.on_record(&r.wallet_id, async |w| {
            self.1.delete_record_data(&w, &r.record_id).await
        })
        .await
    }

    async fn withdraw_offer(
        &self,
        request: Request<proto::WithdrawOfferRequest>,
    ) -> Result<Response<proto::CredentialRecord>, Status> {
        let r = request.into_inner();
        self.on_record(&r.wallet_id, async |w| {
            self.1.withdraw_offer(&w, &r.record_id, &r.reason).await
        })
        .await
    }

    async fn issue_custodial(
        &self,
        request: Request<proto::IssueCustodialRequest>,
    ) -> Result<Response<proto::IssueCustodialResponse>, Status> {
        let r = request.into_inner();
        let issuer = super::auth::wallet(&self.0, &r.wallet_id)?;
        if r.holder_wallet_id.is_empty() {
            return Err(status(Error::InvalidArgument(
                "holder_wallet_id is required".into(),
            )));
        }
        let holder = super::auth::wallet(&self.0, &r.holder_wallet_id)?;
        let spec = OfferSpec {
            claims_json: r.claims_json,
            types: r.types,
            schema_id: non_empty(r.schema_id),
            validity_period_secs: r.validity_period_secs,
            idempotency_key: non_empty(r.idempotency_key),
            issuer_did: non_empty(r.issuer_did),
            template_id: non_empty(r.template_id),
            correlation_id: non_empty(r.correlation_id),
            reference_id: non_empty(r.reference_id),
            collection_id: non_empty(r.collection_id),
            refuse_duplicate: r.refuse_duplicate,
            credential_expires_at: (r.credential_expires_at > 0).then_some(r.credential_expires_at),
            ..Default::default()
        };
        let wait_ms = match r.wait_ms {
            0 => DEFAULT_WAIT_MS,
            n => n.min(MAX_WAIT_MS),
        };
        let subject = non_empty(r.subject_did);
        let done = self
            .1
            .custodial(
                &issuer,
                &holder,
                &spec,
                subject.as_deref(),
                Duration::from_millis(wait_ms as u64),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(proto::IssueCustodialResponse {
            was_offered: done.was_offered,
            was_accepted: done.was_accepted,
            issuer_record: Some(record_to_proto(&self.0, done.issuer)),
            holder_record: Some(record_to_proto(&self.0, done.holder)),
            credential: Some(credential_to_proto(done.credential)),
        }))
    }

    async fn revoke_credential(
        &self,
        request: Request<proto::RevokeCredentialRequest>,
    ) -> Result<Response<proto::CredentialRecord>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let rec = self
            .1
            .revoke(&wallet, &r.id, &r.reason)
            .await
            .map_err(status)?;
        Ok(Response::new(record_to_proto(&self.0, rec)))
    }

    async fn revoke_credentials(
        &self,
        request: Request<proto::RevokeCredentialsRequest>,
    ) -> Result<Response<proto::RevokeCredentialsResponse>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let outcomes = self
            .1
            .revoke_all(&wallet, &r.ids, &r.reason)
            .await
            .map_err(status)?;
        let results = r
            .ids
            .into_iter()
            .zip(outcomes)
            .map(|(id, outcome)| {
                let (outcome, record) = match outcome {
                    Revoked::Now(rec) => (proto::RevokeOutcome::Revoked, Some(rec)),
                    Revoked::Already(rec) => (proto::RevokeOutcome::AlreadyRevoked, Some(rec)),
                    Revoked::NotFound => (proto::RevokeOutcome::NotFound, None),
                };
                proto::RevokeResult {
                    id,
                    outcome: outcome as i32,
                    record: record.map(|rec| record_to_proto(&self.0, rec)),
                }
            })
            .collect();
        Ok(Response::new(proto::RevokeCredentialsResponse { results }))
    }
}
