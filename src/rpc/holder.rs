use tonic::{Request, Response, Status};

use super::issuance::{credential_to_proto, record_to_proto};
use super::proto::{self, holder_service_server::HolderService};
use super::{query, status};
use crate::Core;
use crate::error::Error;
use crate::protocols::issue_credential;
use crate::search::Kind;
use crate::store::{CredentialRecord, StoredCredential};
use crate::verify::Verifier;
use crate::verify::held::{self, HeldStatus};

pub struct Holder(pub Core, pub issue_credential::Issuance, pub Verifier);

impl Holder {
    fn wallet(&self, id: &str) -> Result<String, Status> {
        super::auth::wallet(&self.0, id)
    }

    /// Checks a held credential's status list and keeps the outcome: a
    /// write, so not for an auditor's token (whose reads get PERMISSION_DENIED
    /// with `check_status`).
    async fn refresh(&self, wallet: &str, id: &str) -> Result<StoredCredential, Status> {
        if super::auth::caller().is_auditor() {
            return Err(status(Error::PermissionDenied(
                "an auditor's token cannot check status (it stores the outcome)".into(),
            )));
        }
        held::refresh(&self.2, wallet, id).await.map_err(status)
    }
}

/// The status a filter asks for (None: any).
fn wanted(s: i32) -> Result<Option<HeldStatus>, Status> {
    use proto::CredentialStatus as P;
    match P::try_from(s) {
        Ok(P::Unspecified) => Ok(None),
        Ok(P::Active) => Ok(Some(HeldStatus::Active)),
        Ok(P::Expired) => Ok(Some(HeldStatus::Expired)),
        Ok(P::Revoked) => Ok(Some(HeldStatus::Revoked)),
        Err(_) => Err(status(Error::InvalidArgument(format!(
            "status {s} is not a CredentialStatus"
        )))),
    }
}

#[tonic::async_trait]
impl HolderService for Holder {
    async fn list_offers(
        &self,
        request: Request<proto::ListOffersRequest>,
    ) -> Result<Response<proto::ListRecordsResponse>, Status> {
        let r = request.into_inner();
        let wallet = self.wallet(&r.wallet_id)?;
        let kind = Kind::Records;
        let offers = vec![
            query::eq(kind, "role", "holder")?,
            query::eq(kind, "state", "OfferReceived")?,
        ];
        let q = query::query(kind, r.query.as_ref(), offers)?;
        let found = query::page::<CredentialRecord>(&self.0.store, &wallet, q, &r.page).await?;
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

    async fn accept_offer(
        &self,
        request: Request<proto::AcceptOfferRequest>,
    ) -> Result<Response<proto::CredentialRecord>, Status> {
        let r = request.into_inner();
        let wallet = self.wallet(&r.wallet_id)?;
        let subject = (!r.subject_did.is_empty()).then_some(r.subject_did.as_str());
        let rec = self
            .1
            .accept_offer(&wallet, &r.record_id, subject)
            .await
            .map_err(status)?;
        Ok(Response::new(record_to_proto(&self.0, rec)))
    }

    async fn reject_offer(
        &self,
        request: Request<proto::RejectOfferRequest>,
    ) -> Result<Response<proto::CredentialRecord>, Status> {
        let r = request.into_inner();
        let wallet = self.wallet(&r.wallet_id)?;
        let rec = self
            .1
            .reject_offer(&wallet, &r.record_id, &r.reason)
            .await
            .map_err(status)?;
        Ok(Response::new(record_to_proto(&self.0, rec)))
    }

    async fn list_credentials(
        &self,
        request: Request<proto::ListCredentialsRequest>,
    ) -> Result<Response<proto::ListCredentialsResponse>, Status> {
        let r = request.into_inner();
        let wallet = self.wallet(&r.wallet_id)?;
        let wanted = wanted(r.status)?;
        let kind = Kind::Credentials;
        let mut and = Vec::new();
        if !r.r#type.is_empty() {
            and.push(query::eq(kind, "types", &r.r#type)?);
        }
        if let Some(w) = wanted {
            and.push(query::eq(kind, "status", format!("{w:?}"))?);
        }
        let q = query::query(kind, r.query.as_ref(), and)?;
        let found = query::page::<StoredCredential>(&self.0.store, &wallet, q, &r.page).await?;
        let now = crate::now_secs();
        let total = query::total(&found);
        let mut credentials = found.items;
        if r.check_status {
            let mut checked = Vec::with_capacity(credentials.len());
            for c in credentials {
                checked.push(self.refresh(&wallet, &c.id).await?);
            }
            credentials = checked
                .into_iter()
                .filter(|c| wanted.is_none_or(|w| held::status_of(c, now) == w))
                .collect();
        }
        Ok(Response::new(proto::ListCredentialsResponse {
            total,
            credentials: credentials.into_iter().map(credential_to_proto).collect(),
            next_page_token: found.next_token,
        }))
    }

    async fn get_credential(
        &self,
        request: Request<proto::GetCredentialRequest>,
    ) -> Result<Response<proto::Credential>, Status> {
        let r = request.into_inner();
        let wallet = self.wallet(&r.wallet_id)?;
        let c = if r.check_status {
            self.refresh(&wallet, &r.credential_id).await?
        } else {
            self.0
                .store
                .credential(&wallet, &r.credential_id)
                .map_err(status)?
        };
        Ok(Response::new(credential_to_proto(c)))
    }

    async fn refresh_status(
        &self,
        request: Request<proto::GetCredentialRequest>,
    ) -> Result<Response<proto::Credential>, Status> {
        let r = request.into_inner();
        let wallet = self.wallet(&r.wallet_id)?;
        let c = self.refresh(&wallet, &r.credential_id).await?;
        Ok(Response::new(credential_to_proto(c)))
    }

    async fn delete_credential(
        &self,
        request: Request<proto::GetCredentialRequest>,
    ) -> Result<Response<proto::DeleteCredentialResponse>, Status> {
        let r = request.into_inner();
        let wallet = self.wallet(&r.wallet_id)?;
        self.1
            .delete_credential(&wallet, &r.credential_id)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::DeleteCredentialResponse {}))
    }

    async fn match_credential(
        &self,
        request: Request<proto::MatchCredentialRequest>,
    ) -> Result<Response<proto::Credential>, Status> {
        let r = request.into_inner();
        let wallet = self.wallet(&r.wallet_id)?;
        if r.r#type.is_empty() {
            return Err(status(Error::InvalidArgument("type is required".into())));
        }
        let c = self
            .0
            .store
            .find_credential(&wallet, |c| c.types.contains(&r.r#type))
            .map_err(status)?
            .ok_or_else(|| status(Error::not_found("credential of type", r.r#type.clone())))?;
        Ok(Response::new(credential_to_proto(c)))
    }
}
