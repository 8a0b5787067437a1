//! `CredentialStatus`: each `BitstringStatusListEntry` of a credential
//! (`StatusList2021Entry` reads the same) against its list. Our own lists
//! are read from the store, so a revocation is seen the moment it is
//! committed; a foreign list is fetched, its VC-JWT verified (signed by the
//! credential's issuer, of the entry's purpose), and its bit tested.

use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::Value;

use super::{Check, SHOWN, STATUS, Verifier, credential_of, issuer_of};

/// Entries one credential may name.
const MAX_ENTRIES: usize = 8;
/// Decoded foreign lists kept; past it they are decoded again as needed.
const MAX_LISTS: usize = 256;
/// Largest decompressed list: 64 Mi entries, far past any real list, and a
/// bound on what a small compressed body may expand to.
const MAX_LIST_BYTES: u64 = 8 * 1024 * 1024;

/// What one entry's bit says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryState {
    pub purpose: String,
    pub set: bool,
}

pub(super) async fn check(v: &Verifier, issuer: &str, entries: &Value) -> Check {
    match states(v, issuer, entries).await {
        Err(why) => Check::fail(STATUS, why),
        Ok(states) => {
            let set: Vec<String> = states
                .iter()
                .filter(|s| s.set)
                .map(|s| match s.purpose.as_str() {
                    "revocation" => "revoked".to_string(),
                    "suspension" => "suspended".to_string(),
                    other => format!("its {other} status is set"),
                })
                .collect();
            if set.is_empty() {
                Check::pass(STATUS)
            } else {
                Check {
                    messages: set
                        .into_iter()
                        .map(|s| format!("the issuer's status list says: {s}"))
                        .collect(),
                    ..Check::fail(STATUS, "")
                }
            }
        }
    }
}

/// The state of each of a credential's status entries (an object or an
/// array of them), or why they could not be read.
pub async fn states(
    v: &Verifier,
    issuer: &str,
    entries: &Value,
) -> Result<Vec<EntryState>, String> {
    let entries: Vec<&Value> = match entries {
        Value::Array(a) => a.iter().collect(),
        one => vec![one],
    };
    if entries.len() > MAX_ENTRIES {
        return Err(format!(
            "{} status entries, over {MAX_ENTRIES}",
            entries.len()
        ));
    }
    let mut states = Vec::with_capacity(entries.len());
    for entry in entries {
        states.push(state(v, issuer, entry).await?);
    }
    Ok(states)
}

async fn state(v: &Verifier, issuer: &str, entry: &Value) -> Result<EntryState, String> {
    let kind = entry["type"].as_str().unwrap_or_default();
    if !matches!(kind, "BitstringStatusListEntry" | "StatusList2021Entry") {
        return Err(format!(
            "status type {} is not supported (BitstringStatusListEntry)",
            crate::error::clip(kind, SHOWN)
        ));
    }
    let purpose = entry["statusPurpose"]
        .as_str()
        .ok_or("the status entry has no statusPurpose")?;
    let index: u64 = match &entry["statusListIndex"] {
        Value::String(s) => s.parse().ok(),
        n => n.as_u64(),
    }
    .ok_or("statusListIndex is not a number")?;
    let url = entry["statusListCredential"]
        .as_str()
        .ok_or("the status entry has no statusListCredential")?;
    let set = match own_list(v, url) {
        Some(list_id) => own_bit(v, issuer, purpose, list_id, index)?,
        None => foreign_bit(v, issuer, purpose, url, index).await?,
    };
    Ok(EntryState {
        purpose: purpose.to_string(),
        set,
    })
}

/// The list id, when `url` is where we publish our lists.
fn own_list<'u>(v: &Verifier, url: &'u str) -> Option<&'u str> {
    let base = crate::status::list_url(&v.core.endpoint, "");
    url.strip_prefix(base.as_str())
        .filter(|id| !id.contains(['/', '?', '#']))
}

fn own_bit(
    v: &Verifier,
    issuer: &str,
    purpose: &str,
    list_id: &str,
    index: u64,
) -> Result<bool, String> {
    let store = &v.core.store;
    let list = store
        .status_list(list_id)
        .map_err(|e| format!("reading status list {list_id}: {e}"))?
        .ok_or_else(|| {
            format!(
                "status list {} is not one of ours",
                crate::error::clip(list_id, SHOWN)
            )
        })?;
    if list.issuer_did != issuer {
        return Err(format!("status list {list_id} is not the issuer's"));
    }
    if purpose != "revocation" {
        return Err(format!(
            "status list {list_id} is for revocation, not {purpose}"
        ));
    }
    let index = u32::try_from(index)
        .ok()
        .filter(|i| *i < list.capacity)
        .ok_or_else(|| format!("index {index} is past the list's {} entries", list.capacity))?;
    store
        .status_revoked(list_id, index)
        .map_err(|e| format!("reading status list {list_id}: {e}"))
}

async fn foreign_bit(
    v: &Verifier,
    issuer: &str,
    purpose: &str,
    url: &str,
    index: u64,
) -> Result<bool, String> {
    let shown = crate::error::clip(url, SHOWN);
    let list = foreign_list(v, url).await?;
    if list.signer.as_deref() != Some(issuer) {
        return Err(format!(
            "the status list at {shown} is not signed by the credential's issuer"
        ));
    }
    if list.purpose.as_deref() != Some(purpose) {
        return Err(format!("the status list at {shown} is not for {purpose}"));
    }
    bit(&list.bits, index).ok_or_else(|| {
        format!(
            "index {index} is past the {} entries of the status list at {shown}",
            list.bits.len() * 8
        )
    })
}

/// A fetched status list whose VC-JWT verified, decoded.
pub(super) struct VerifiedList {
    /// The body it came from: while the fetcher hands out the same one
    /// (from its cache), the decoded list is reused.
    body: std::sync::Arc<[u8]>,
    signer: Option<String>,
    purpose: Option<String>,
    bits: Vec<u8>,
}

/// The list at `url`, fetched (or from the fetcher's cache), its signature
/// verified and its bits decoded once per body.
async fn foreign_list(v: &Verifier, url: &str) -> Result<std::sync::Arc<VerifiedList>, String> {
    let body = v.fetcher.get(url).await.map_err(|e| e.to_string())?;
    if let Some(known) = v.lists().get(url)
        && std::sync::Arc::ptr_eq(&known.body, &body)
    {
        return Ok(known.clone());
    }
    let shown = crate::error::clip(url, SHOWN);
    let text = std::str::from_utf8(&body)
        .map_err(|_| format!("the status list at {shown} is not text"))?
        .trim();
    if text.starts_with('{') {
        return Err(format!(
            "the status list at {shown} is JSON with an embedded proof; only VC-JWT lists are verified"
        ));
    }
    let jws = crate::vc::parse_jwt(text)
        .map_err(|e| format!("the status list at {shown} is not a VC-JWT: {e}"))?;
    let signature = v.signature(&jws).await;
    if !signature.valid {
        return Err(format!(
            "the status list at {shown} does not verify: {}",
            signature.messages.join("; ")
        ));
    }
    let list = credential_of(&jws.payload).unwrap_or(&Value::Null);
    let subject = &list["credentialSubject"];
    let encoded = subject["encodedList"]
        .as_str()
        .ok_or_else(|| format!("the status list at {shown} has no encodedList"))?;
    let verified = std::sync::Arc::new(VerifiedList {
        signer: jws.payload["iss"]
            .as_str()
            .or_else(|| issuer_of(list))
            .map(str::to_string),
        purpose: subject["statusPurpose"].as_str().map(str::to_string),
        bits: decode_list(encoded).map_err(|e| format!("the status list at {shown}: {e}"))?,
        body: body.clone(),
    });
    let mut lists = v.lists();
    if lists.len() >= MAX_LISTS {
        lists.clear();
    }
    lists.insert(url.to_string(), verified.clone());
    Ok(verified)
}

/// The bitstring of an `encodedList`: multibase base64url (`u`; plain
/// base64url as StatusList2021 had it), GZIP-compressed.
pub fn decode_list(encoded: &str) -> Result<Vec<u8>, String> {
    let b64 = encoded.strip_prefix('u').unwrap_or(encoded);
    let zipped = URL_SAFE_NO_PAD
        .decode(b64)
        .or_else(|_| URL_SAFE.decode(b64))
        .map_err(|_| "encodedList is not base64url".to_string())?;
    let mut bits = Vec::new();
    flate2::read::GzDecoder::new(zipped.as_slice())
        .take(MAX_LIST_BYTES + 1)
        .read_to_end(&mut bits)
        .map_err(|e| format!("encodedList is not GZIP: {e}"))?;
    if bits.len() as u64 > MAX_LIST_BYTES {
        return Err(format!("encodedList expands past {MAX_LIST_BYTES} bytes"));
    }
    Ok(bits)
}

/// Bit `index` (index 0 the most significant bit of the first byte).
pub fn bit(bits: &[u8], index: u64) -> Option<bool> {
    let byte = bits.get(usize::try_from(index / 8).ok()?)?;
    Some(byte & (0x80 >> (index % 8)) != 0)
}
