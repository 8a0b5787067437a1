//! Control-plane tokens: 256 random bits shown once, kept only as a
//! SHA-256 hash, bound to one wallet and one role, revocable (the next call
//! sees it). The first admin token is made at start (see [`bootstrap`]).

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::Core;
use crate::config::Grpc;
use crate::error::{Error, Result};
use crate::search::{self, ACROSS_WALLETS, Filter, Kind, Query};
use crate::store::{Store, Token, TokenRole};

/// Every secret starts with this, so one found in a log or a repository is
/// recognisable (and scanners can look for it).
const PREFIX: &str = "agentd_";

/// Who made the tokens made at start.
pub const BOOTSTRAP: &str = "bootstrap";

/// A token just made: the record and the secret, which is never shown again.
pub struct Issued {
    pub token: Token,
    pub secret: String,
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Makes a token for `wallet` (which must exist) with `role`.
pub fn create(
    core: &Core,
    wallet: &str,
    role: TokenRole,
    label: &str,
    rate_per_sec: u32,
    created_by: &str,
) -> Result<Issued> {
    core.store.wallet(wallet)?;
    if label.len() > 256 {
        return Err(Error::InvalidArgument("label is over 256 bytes".into()));
    }
    let secret = new_secret();
    let token = record(wallet, role, label, rate_per_sec, created_by, &secret);
    core.store.transact(|tx| tx.put_token(&token))?;
    Ok(Issued { token, secret })
}

fn record(
    wallet: &str,
    role: TokenRole,
    label: &str,
    rate_per_sec: u32,
    created_by: &str,
    secret: &str,
) -> Token {
    Token {
        id: uuid::Uuid::new_v4().to_string(),
        wallet_id: wallet.to_string(),
        role,
        label: label.to_string(),
        hash: hash(secret),
        rate_per_sec,
        created_at_ms: crate::now_ms(),
        created_by: created_by.to_string(),
        revoked_at_ms: None,
    }
}

/// The live token whose secret was presented. Unknown and revoked tokens
/// get the same answer, so a caller learns nothing from it.
pub fn authenticate(store: &Store, presented: &str) -> Result<Token> {
    store
        .token_by_hash(&hash(presented))?
        .filter(|t| t.revoked_at_ms.is_none())
        .ok_or_else(|| Error::Unauthenticated("unknown or revoked token".into()))
}

/// Revokes token `id`; the next call presenting it is refused.
pub fn revoke(store: &Store, id: &str) -> Result<Token> {
    store.transact(|tx| {
        let mut t = tx.token(id)?;
        if t.revoked_at_ms.is_none() {
            t.revoked_at_ms = Some(crate::now_ms());
            tx.put_token(&t)?;
        }
        Ok(t)
    })
}

/// Makes sure an admin token exists at start: the one given
/// (`AGENTD_ADMIN_TOKEN`, or the deprecated `grpc.api_key`) is registered
/// if new; with none given and no admin token yet (a first start), one is
/// made and written to `grpc.admin_token_file` (0600). Only the path is
/// logged.
pub fn bootstrap(core: &Core, grpc: &Grpc) -> Result<()> {
    let store = &core.store;
    let wallet = crate::wallet::DEFAULT_WALLET;
    if let Some(given) = grpc.admin_token.as_deref().or(grpc.api_key.as_deref()) {
        if store.token_by_hash(&hash(given))?.is_none() {
            let token = record(
                wallet,
                TokenRole::Admin,
                "bootstrap (given)",
                0,
                BOOTSTRAP,
                given,
            );
            store.transact(|tx| tx.put_token(&token))?;
        }
        return Ok(());
    }
    let live_admin = Query::default()
        .and(Filter::eq(Kind::Tokens, "role", TokenRole::Admin.name())?)
        .and(Filter::eq(Kind::Tokens, "status", "active")?);
    let found = search::run::<Token>(store, ACROSS_WALLETS, &live_admin, 1, "", crate::now_ms())?;
    if !found.items.is_empty() {
        return Ok(());
    }
    let secret = new_secret();
    write_private(&grpc.admin_token_file, &secret)?;
    let token = record(wallet, TokenRole::Admin, "bootstrap", 0, BOOTSTRAP, &secret);
    store.transact(|tx| tx.put_token(&token))?;
    tracing::info!(file = %grpc.admin_token_file.display(), "made the first admin token");
    Ok(())
}

fn write_private(path: &Path, secret: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| Error::Storage(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(format!("{secret}\n").as_bytes()).map_err(io)
}
