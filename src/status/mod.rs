//! Credential status: W3C Bitstring Status List v1.0, purpose `revocation`.
//!
//! Every credential an issuer DID signs takes an index in that DID's
//! current list ([`allocate`], inside the issuing transaction) and names it
//! in its `credentialStatus` ([`entry`]). Indices are never reused and are
//! drawn at random (the spec's privacy guidance: neighbouring indices say
//! nothing about issuance order); a full list is followed by a new one.
//! The lists are published by [`serve`] at `<public base>/status/<list id>`.

mod serve;

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

pub use serve::routes;

use crate::error::{Error, Result};
use crate::store::{StatusList, StatusSlot, StoreTx};

/// Entries per list: the spec's minimum (16 KiB of bits), large enough
/// that one index says little about which credential it is.
pub const CAPACITY: u32 = 131_072;

/// Random draws before walking from a random start to the next free index
/// (which only a nearly full list needs).
const PROBES: usize = 16;

/// Takes a free index for a new credential of `issuer_did` from its current
/// list, starting a list of `capacity` entries when there is none or it is
/// full. Runs inside the transaction that stores the credential's record.
pub fn allocate(tx: &StoreTx, wallet: &str, issuer_did: &str, capacity: u32) -> Result<StatusSlot> {
    let mut list = match tx.current_status_list(wallet, issuer_did)? {
        Some(list) if list.allocated < list.capacity => list,
        _ => StatusList {
            id: uuid::Uuid::new_v4().to_string(),
            wallet_id: wallet.to_string(),
            issuer_did: issuer_did.to_string(),
            capacity,
            allocated: 0,
            revision: 0,
            created_at_ms: crate::now_ms(),
        },
    };
    let index = free_index(tx, &list)?;
    tx.take_status_index(&list.id, index)?;
    list.allocated += 1;
    tx.put_status_list(&list, true)?;
    Ok(StatusSlot {
        list_id: list.id,
        index,
    })
}

/// A random free index of a list that is not full.
fn free_index(tx: &StoreTx, list: &StatusList) -> Result<u32> {
    for _ in 0..PROBES {
        let i = rand::random_range(0..list.capacity);
        if !tx.status_index_taken(&list.id, i)? {
            return Ok(i);
        }
    }
    let start = rand::random_range(0..list.capacity);
    for step in 0..list.capacity {
        let i = ((start as u64 + step as u64) % list.capacity as u64) as u32;
        if !tx.status_index_taken(&list.id, i)? {
            return Ok(i);
        }
    }
    Err(Error::Internal(format!(
        "status list {} counts {} of {} entries taken but has none free",
        list.id, list.allocated, list.capacity
    )))
}

/// The public URL of a list: our DIDComm endpoint's base (without its
/// `/didcomm` path), then `/status/<list id>`.
pub fn list_url(endpoint: &str, list_id: &str) -> String {
    let base = endpoint.strip_suffix("/didcomm").unwrap_or(endpoint);
    format!("{}/status/{list_id}", base.trim_end_matches('/'))
}

/// The `credentialStatus` of the credential at `slot`.
pub fn entry(endpoint: &str, slot: &StatusSlot) -> Value {
    let url = list_url(endpoint, &slot.list_id);
    json!({
        "id": format!("{url}#{}", slot.index),
        "type": "BitstringStatusListEntry",
        "statusPurpose": "revocation",
        "statusListIndex": slot.index.to_string(),
        "statusListCredential": url,
    })
}

/// The `encodedList` of a list of `capacity` bits with `set` set: the
/// bitstring (index 0 the most significant bit of the first byte),
/// GZIP-compressed, as multibase base64url without padding (prefix `u`).
pub fn encode_list(capacity: u32, set: &[u32]) -> Result<String> {
    let mut bits = vec![0u8; capacity.div_ceil(8) as usize];
    for &i in set.iter().filter(|i| **i < capacity) {
        bits[i as usize / 8] |= 0x80 >> (i % 8);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&bits)
        .and_then(|()| gz.finish())
        .map(|zipped| format!("u{}", URL_SAFE_NO_PAD.encode(zipped)))
        .map_err(|e| Error::Internal(format!("compressing a status list: {e}")))
}

#[cfg(test)]
mod tests;
