//! Wallets (tenants) and the DIDs they hold. Keys and DID records are
//! written in one transaction, so a DID never exists without its keys.

use crate::Core;
use crate::crypto::KeyStore;
use crate::did;
use crate::error::{Error, Result};
use crate::store::{DidMethod, DidRecord, KeyKind, KeyType, StoreTx, Wallet};

pub const DEFAULT_WALLET: &str = "default";

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Creates a wallet; an empty id picks a random one.
pub fn create_wallet(core: &Core, id: &str, label: &str) -> Result<Wallet> {
    let id = if id.is_empty() {
        uuid::Uuid::new_v4().simple().to_string()
    } else if valid_id(id) {
        id.to_string()
    } else {
        return Err(Error::InvalidArgument(format!(
            "wallet id `{id}` must be 1..64 characters of a-z, 0-9, '-', '_'"
        )));
    };
    let wallet = Wallet {
        id,
        label: label.to_string(),
        created_at_ms: crate::now_ms(),
    };
    core.store.transact(|tx| tx.create_wallet(&wallet))?;
    Ok(wallet)
}

/// Makes sure the default wallet exists (first start).
pub fn ensure_default(core: &Core) -> Result<()> {
    match create_wallet(core, DEFAULT_WALLET, "default wallet") {
        Ok(_) | Err(Error::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The wallet id a request names ("" means the default wallet), checked to exist.
pub fn resolve_wallet(core: &Core, id: &str) -> Result<String> {
    let id = if id.is_empty() { DEFAULT_WALLET } else { id };
    core.store.wallet(id)?;
    Ok(id.to_string())
}

/// Keys and record for a new DID with an Ed25519 signing key, to be
/// written with [`put_did`]. did:peer:2 DIDs point at this agent's public
/// DIDComm endpoint.
pub fn new_did(
    keys: &KeyStore,
    endpoint: &str,
    wallet: &str,
    method: DidMethod,
    purpose: &str,
) -> NewDid {
    make_did(keys, endpoint, wallet, method, KeyType::Ed25519, purpose)
}

/// As [`new_did`], with a signing key of `key_type`; only did:key takes
/// other types than Ed25519 (the caller checks).
fn make_did(
    keys: &KeyStore,
    endpoint: &str,
    wallet: &str,
    method: DidMethod,
    key_type: KeyType,
    purpose: &str,
) -> NewDid {
    let signing = keys.generate(wallet, key_type.kind());
    let (did, agreement) = match method {
        DidMethod::Key => (did::did_key(key_type, &signing.record.public), None),
        DidMethod::Peer2 => {
            let agreement = keys.generate(wallet, KeyKind::X25519);
            let did = did::create_peer2(&signing.record.public, &agreement.record.public, endpoint);
            (did, Some(agreement))
        }
    };
    let record = DidRecord {
        did,
        wallet_id: wallet.to_string(),
        method,
        key_type,
        signing_key_id: signing.record.id.clone(),
        // did:key agrees with the X25519 key derived from its Ed25519 key
        // (and its ECDSA keys agree on none: see `KeyStore::agreement_secret`).
        agreement_key_id: agreement
            .as_ref()
            .map_or_else(|| signing.record.id.clone(), |a| a.record.id.clone()),
        purpose: purpose.to_string(),
        created_at_ms: crate::now_ms(),
    };
    NewDid {
        record,
        keys: std::iter::once(signing.record)
            .chain(agreement.map(|a| a.record))
            .collect(),
    }
}

pub struct NewDid {
    pub record: DidRecord,
    keys: Vec<crate::store::StoredKey>,
}

impl NewDid {
    /// The sealed signing key, to sign with before the DID is stored.
    pub fn signing_key(&self) -> &crate::store::StoredKey {
        &self.keys[0]
    }
}

/// Writes a new DID's keys and record inside a transaction.
pub fn put_did(tx: &StoreTx, new: &NewDid) -> Result<()> {
    for k in &new.keys {
        tx.put_key(&new.record.wallet_id, k)?;
    }
    tx.put_did(&new.record)
}

/// Creates and stores a DID in `wallet` with a signing key of `key_type`
/// (a did:peer:2 is Ed25519); `purpose` says what it is for ("user",
/// "subject", "issuer").
pub fn create_did(
    core: &Core,
    wallet: &str,
    method: DidMethod,
    key_type: KeyType,
    purpose: &str,
) -> Result<DidRecord> {
    if method == DidMethod::Peer2 && key_type != KeyType::Ed25519 {
        return Err(Error::InvalidArgument(format!(
            "a did:peer:2 has an Ed25519 key, not a {key_type} one: \
             make a did:key for a {key_type} key"
        )));
    }
    let new = make_did(
        &core.keys,
        &core.endpoint,
        wallet,
        method,
        key_type,
        purpose,
    );
    core.store.transact(|tx| put_did(tx, &new))?;
    Ok(new.record)
}
