use tonic::{Request, Response, Status};

use super::proto::{self, wallet_service_server::WalletService};
use super::{page, status};
use crate::{Core, store, wallet};

pub struct Wallets(pub Core);

fn to_proto(w: store::Wallet) -> proto::Wallet {
    proto::Wallet {
        id: w.id,
        label: w.label,
        created_at_ms: w.created_at_ms,
    }
}

#[tonic::async_trait]
impl WalletService for Wallets {
    async fn create_wallet(
        &self,
        request: Request<proto::CreateWalletRequest>,
    ) -> Result<Response<proto::Wallet>, Status> {
        let r = request.into_inner();
        let w = wallet::create_wallet(&self.0, &r.id, &r.label).map_err(status)?;
        Ok(Response::new(to_proto(w)))
    }

    async fn get_wallet(
        &self,
        request: Request<proto::GetWalletRequest>,
    ) -> Result<Response<proto::Wallet>, Status> {
        let id = super::auth::wallet(&self.0, &request.into_inner().id)?;
        let w = self.0.store.wallet(&id).map_err(status)?;
        Ok(Response::new(to_proto(w)))
    }

    async fn list_wallets(
        &self,
        request: Request<proto::ListWalletsRequest>,
    ) -> Result<Response<proto::ListWalletsResponse>, Status> {
        let r = request.into_inner();
        let (size, token) = page(&r.page)?;
        let p = self.0.store.wallets(size, token).map_err(status)?;
        Ok(Response::new(proto::ListWalletsResponse {
            wallets: p.items.into_iter().map(to_proto).collect(),
            next_page_token: p.next_token,
        }))
    }
}
