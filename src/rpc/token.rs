use tonic::{Request, Response, Status};

use super::proto::{self, token_service_server::TokenService};
use super::{auth, query, status};
use crate::error::Error;
use crate::search::{ACROSS_WALLETS, Kind};
use crate::store::{self, Token, TokenRole};
use crate::{Core, tokens};

pub struct Tokens(pub Core);

fn role_to_proto(r: TokenRole) -> proto::TokenRole {
    match r {
        TokenRole::Admin => proto::TokenRole::Admin,
        TokenRole::Issuer => proto::TokenRole::Issuer,
        TokenRole::Holder => proto::TokenRole::Holder,
        TokenRole::Auditor => proto::TokenRole::Auditor,
    }
}

fn to_proto(t: store::Token) -> proto::Token {
    proto::Token {
        id: t.id,
        wallet_id: t.wallet_id,
        role: role_to_proto(t.role) as i32,
        label: t.label,
        created_at_ms: t.created_at_ms,
        created_by: t.created_by,
        revoked_at_ms: t.revoked_at_ms.unwrap_or(0),
        rate_per_sec: t.rate_per_sec,
    }
}

#[tonic::async_trait]
impl TokenService for Tokens {
    async fn create_token(
        &self,
        request: Request<proto::CreateTokenRequest>,
    ) -> Result<Response<proto::CreateTokenResponse>, Status> {
        let r = request.into_inner();
        let role = match proto::TokenRole::try_from(r.role) {
            Ok(proto::TokenRole::Admin) => TokenRole::Admin,
            Ok(proto::TokenRole::Issuer) => TokenRole::Issuer,
            Ok(proto::TokenRole::Holder) => TokenRole::Holder,
            Ok(proto::TokenRole::Auditor) => TokenRole::Auditor,
            _ => {
                return Err(status(Error::InvalidArgument(
                    "role must be TOKEN_ROLE_ADMIN, _ISSUER, _HOLDER or _AUDITOR".into(),
                )));
            }
        };
        let wallet = auth::wallet(&self.0, &r.wallet_id)?;
        let by = auth::caller();
        let issued = tokens::create(&self.0, &wallet, role, &r.label, r.rate_per_sec, by.id())
            .map_err(status)?;
        Ok(Response::new(proto::CreateTokenResponse {
            token: Some(to_proto(issued.token)),
            secret: issued.secret,
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<proto::ListTokensRequest>,
    ) -> Result<Response<proto::ListTokensResponse>, Status> {
        let r = request.into_inner();
        let kind = Kind::Tokens;
        let mut and = Vec::new();
        if !r.wallet_id.is_empty() {
            and.push(query::eq(kind, "wallet_id", &r.wallet_id)?);
        }
        let q = query::query(kind, r.query.as_ref(), and)?;
        let found = query::page::<Token>(&self.0.store, ACROSS_WALLETS, q, &r.page).await?;
        Ok(Response::new(proto::ListTokensResponse {
            total: query::total(&found),
            tokens: found.items.into_iter().map(to_proto).collect(),
            next_page_token: found.next_token,
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<proto::RevokeTokenRequest>,
    ) -> Result<Response<proto::Token>, Status> {
        let t = tokens::revoke(&self.0.store, &request.into_inner().id).map_err(status)?;
        Ok(Response::new(to_proto(t)))
    }
}
