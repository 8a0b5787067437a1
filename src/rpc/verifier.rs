use tonic::{Request, Response, Status};

use super::proto::{self, verifier_service_server::VerifierService};
use super::{page, status};
use crate::Core;
use crate::error::Error;
use crate::store::TrustedIssuer;
use crate::verify::{self, Verifier};

pub struct Verification(pub Core, pub Verifier);

fn check_to_proto(c: verify::Check) -> proto::Check {
    proto::Check {
        name: c.name.to_string(),
        valid: c.valid,
        applicable: c.applicable,
        messages: c.messages,
    }
}

fn trusted_to_proto(t: TrustedIssuer) -> proto::TrustedIssuer {
    proto::TrustedIssuer {
        wallet_id: t.wallet_id,
        did: t.did,
        label: t.label,
        added_at_ms: t.added_at_ms,
        added_by: t.added_by,
    }
}

/// Longest issuer DID kept in a trust list.
const MAX_DID: usize = 2048;

#[tonic::async_trait]
impl VerifierService for Verification {
    async fn verify_credential(
        &self,
        request: Request<proto::VerifyCredentialRequest>,
    ) -> Result<Response<proto::VerifyCredentialResponse>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let report = self.1.verify(&wallet, &r.jwt).await.map_err(status)?;
        Ok(Response::new(proto::VerifyCredentialResponse {
            valid: report.valid(),
            presentation_checks: report
                .presentation
                .into_iter()
                .map(check_to_proto)
                .collect(),
            holder: report.holder.unwrap_or_default(),
            credentials: report
                .credentials
                .into_iter()
                .map(|c| proto::CredentialVerification {
                    valid: c.valid(),
                    id: c.id,
                    issuer: c.issuer,
                    subject: c.subject,
                    types: c.types,
                    checks: c.checks.into_iter().map(check_to_proto).collect(),
                })
                .collect(),
        }))
    }

    async fn add_trusted_issuer(
        &self,
        request: Request<proto::AddTrustedIssuerRequest>,
    ) -> Result<Response<proto::TrustedIssuer>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        if !r.did.starts_with("did:") || r.did.len() > MAX_DID || r.did.contains(['#', '?']) {
            return Err(status(Error::InvalidArgument(format!(
                "did must be a DID (no fragment or query) of at most {MAX_DID} bytes"
            ))));
        }
        if r.label.len() > 256 {
            return Err(status(Error::InvalidArgument(
                "label is over 256 bytes".into(),
            )));
        }
        let t = TrustedIssuer {
            wallet_id: wallet,
            did: r.did,
            label: r.label,
            added_at_ms: crate::now_ms(),
            added_by: crate::actor::current(),
        };
        self.0
            .store
            .transact(|tx| tx.put_trusted_issuer(&t))
            .map_err(status)?;
        Ok(Response::new(trusted_to_proto(t)))
    }

    async fn remove_trusted_issuer(
        &self,
        request: Request<proto::RemoveTrustedIssuerRequest>,
    ) -> Result<Response<proto::RemoveTrustedIssuerResponse>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let removed = self
            .0
            .store
            .transact(|tx| tx.remove_trusted_issuer(&wallet, &r.did))
            .map_err(status)?;
        if !removed {
            return Err(status(Error::not_found("trusted issuer", r.did)));
        }
        Ok(Response::new(proto::RemoveTrustedIssuerResponse {}))
    }

    async fn list_trusted_issuers(
        &self,
        request: Request<proto::ListTrustedIssuersRequest>,
    ) -> Result<Response<proto::ListTrustedIssuersResponse>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let (size, token) = page(&r.page)?;
        let p = self
            .0
            .store
            .trusted_issuers(&wallet, size, token)
            .map_err(status)?;
        Ok(Response::new(proto::ListTrustedIssuersResponse {
            issuers: p.items.into_iter().map(trusted_to_proto).collect(),
            next_page_token: p.next_token,
        }))
    }
}
