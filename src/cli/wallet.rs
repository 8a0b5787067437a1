//! `agentd wallet …`, `agentd token …` and `agentd did …`.

use clap::Subcommand;

use agentd::rpc::proto::{
    self, did_service_client::DidServiceClient, token_service_client::TokenServiceClient,
    wallet_service_client::WalletServiceClient,
};

use super::client::{Daemon, Paging, ok};
use super::output::{Show, parse_enum, print};
use super::query::Search;

#[derive(Subcommand)]
pub enum WalletAction {
    /// Creates a wallet.
    Create {
        /// [a-z0-9_-], 1..64 characters; random when not given.
        #[arg(long, default_value = "", hide_default_value = true)]
        id: String,
        /// A human-readable name.
        #[arg(long, default_value = "", hide_default_value = true)]
        label: String,
    },
    /// Shows one wallet.
    Get { id: String },
    /// Lists the wallets.
    List {
        #[command(flatten)]
        paging: Paging,
    },
}

/// Runs one `wallet` action.
pub async fn wallet(d: Daemon, action: WalletAction) -> anyhow::Result<()> {
    let mut c = WalletServiceClient::new(d.svc());
    match action {
        WalletAction::Create { id, label } => {
            let w = ok(c
                .create_wallet(proto::CreateWalletRequest { id, label })
                .await)?;
            d.out.one(&w)?;
        }
        WalletAction::Get { id } => {
            d.out
                .one(&ok(c.get_wallet(proto::GetWalletRequest { id }).await)?)?;
        }
        WalletAction::List { paging } => {
            d.list(&paging, async |page| {
                c.list_wallets(proto::ListWalletsRequest { page: Some(page) })
                    .await
            })
            .await?;
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum TokenAction {
    /// Makes a token for --wallet; prints its secret, which is shown only now.
    Create {
        /// admin, issuer, holder or auditor.
        #[arg(long, value_parser = parse_enum::<proto::TokenRole>)]
        role: i32,
        #[arg(long, default_value = "", hide_default_value = true)]
        label: String,
        /// Its own rate, in calls' worth per second; 0: grpc.rate_per_sec.
        #[arg(long, default_value_t = 0)]
        rate_per_sec: u32,
    },
    /// Lists tokens (of --wallet when given), never their secrets.
    List {
        #[command(flatten)]
        search: Search,
        #[command(flatten)]
        paging: Paging,
    },
    /// Revokes a token; its next call is refused.
    Revoke { id: String },
}

/// Runs one `token` action (admin tokens only).
pub async fn token(d: Daemon, action: TokenAction) -> anyhow::Result<()> {
    let mut c = TokenServiceClient::new(d.svc());
    let wallet_id = d.wallet.clone();
    match action {
        TokenAction::Create {
            role,
            label,
            rate_per_sec,
        } => {
            let r = proto::CreateTokenRequest {
                wallet_id,
                role,
                label,
                rate_per_sec,
            };
            d.out.one(&ok(c.create_token(r).await)?)?;
        }
        TokenAction::List { search, paging } => {
            let query = search.query()?;
            d.list(&paging, async |page| {
                c.list_tokens(proto::ListTokensRequest {
                    wallet_id: wallet_id.clone(),
                    page: Some(page),
                    query: query.clone(),
                })
                .await
            })
            .await?;
        }
        TokenAction::Revoke { id } => {
            d.out
                .one(&ok(c.revoke_token(proto::RevokeTokenRequest { id }).await)?)?;
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum DidAction {
    /// Creates a DID in the wallet.
    Create {
        /// key (did:key) or peer2 (did:peer:2 with a DIDComm service, Ed25519).
        #[arg(long, default_value = "key", value_parser = parse_enum::<proto::DidMethod>)]
        method: i32,
        /// The did:key's signing key, which decides the JWS alg of what it
        /// signs: ed25519 (EdDSA), secp256k1 (ES256K) or p256 (ES256).
        #[arg(long, default_value = "ed25519", value_parser = parse_enum::<proto::KeyType>)]
        key_type: i32,
    },
    /// Lists the wallet's DIDs.
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Prints the DID document of any did:key or did:peer:2.
    Resolve { did: String },
}

/// Runs one `did` action.
pub async fn did(d: Daemon, action: DidAction) -> anyhow::Result<()> {
    let mut c = DidServiceClient::new(d.svc());
    let wallet_id = d.wallet.clone();
    match action {
        DidAction::Create { method, key_type } => {
            let did = ok(c
                .create_did(proto::CreateDidRequest {
                    wallet_id,
                    method,
                    key_type,
                })
                .await)?;
            d.out.one(&did)?;
        }
        DidAction::List { paging } => {
            d.list(&paging, async |page| {
                c.list_dids(proto::ListDidsRequest {
                    wallet_id: wallet_id.clone(),
                    page: Some(page),
                })
                .await
            })
            .await?;
        }
        DidAction::Resolve { did } => {
            let r = ok(c.resolve_did(proto::ResolveDidRequest { did }).await)?;
            if d.out.json {
                d.out.one(&r)?;
            } else {
                // A document reads best as indented JSON.
                let doc = &r.to_json()["did_document"];
                print(serde_json::to_string_pretty(doc)?)?;
            }
        }
    }
    Ok(())
}
