use tonic::{Request, Response, Status};

use super::proto::{self, did_service_server::DidService};
use super::{page, status};
use crate::error::Error;
use crate::store::{DidMethod, DidRecord, KeyType};
use crate::{Core, did, wallet};

pub struct Dids(pub Core);

fn to_proto(d: DidRecord) -> proto::Did {
    proto::Did {
        did: d.did,
        method: match d.method {
            DidMethod::Key => proto::DidMethod::Key,
            DidMethod::Peer2 => proto::DidMethod::Peer2,
        } as i32,
        wallet_id: d.wallet_id,
        created_at_ms: d.created_at_ms,
        purpose: d.purpose,
        key_type: match d.key_type {
            KeyType::Ed25519 => proto::KeyType::Ed25519,
            KeyType::Secp256k1 => proto::KeyType::Secp256k1,
            KeyType::P256 => proto::KeyType::P256,
        } as i32,
    }
}

#[tonic::async_trait]
impl DidService for Dids {
    async fn create_did(
        &self,
        request: Request<proto::CreateDidRequest>,
    ) -> Result<Response<proto::Did>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let key_type = match proto::KeyType::try_from(r.key_type) {
            Ok(proto::KeyType::Unspecified | proto::KeyType::Ed25519) => KeyType::Ed25519,
            Ok(proto::KeyType::Secp256k1) => KeyType::Secp256k1,
            Ok(proto::KeyType::P256) => KeyType::P256,
            Err(_) => {
                return Err(status(Error::InvalidArgument(format!(
                    "key_type {} is unknown: KEY_TYPE_ED25519, KEY_TYPE_SECP256K1 or KEY_TYPE_P256",
                    r.key_type
                ))));
            }
        };
        let method = match proto::DidMethod::try_from(r.method) {
            Ok(proto::DidMethod::Key) => DidMethod::Key,
            Ok(proto::DidMethod::Peer2) => DidMethod::Peer2,
            // A key type alone names did:key, the only method for ECDSA keys.
            Ok(proto::DidMethod::Unspecified) if key_type != KeyType::Ed25519 => DidMethod::Key,
            _ => {
                return Err(status(Error::InvalidArgument(
                    "method must be DID_METHOD_KEY or DID_METHOD_PEER2".into(),
                )));
            }
        };
        let d = wallet::create_did(&self.0, &wallet, method, key_type, "user").map_err(status)?;
        Ok(Response::new(to_proto(d)))
    }

    async fn list_dids(
        &self,
        request: Request<proto::ListDidsRequest>,
    ) -> Result<Response<proto::ListDidsResponse>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let (size, token) = page(&r.page)?;
        let p = self.0.store.dids(&wallet, size, token).map_err(status)?;
        Ok(Response::new(proto::ListDidsResponse {
            dids: p.items.into_iter().map(to_proto).collect(),
            next_page_token: p.next_token,
        }))
    }

    async fn resolve_did(
        &self,
        request: Request<proto::ResolveDidRequest>,
    ) -> Result<Response<proto::ResolveDidResponse>, Status> {
        let resolved =
            did::resolve(&request.into_inner().did).map_err(|e| status(Error::Did(e)))?;
        Ok(Response::new(proto::ResolveDidResponse {
            did_document_json: resolved.document().to_string(),
        }))
    }
}
