//! The status of held credentials: `active`, `expired` or `revoked`, from
//! the issuer's notification and from checking its status list on demand
//! ([`refresh`]). Revocation is final: a list that later shows the bit
//! clear does not undo it.

use serde_json::Value;

use super::{Verifier, credential_of, status};
use crate::error::Result;
use crate::store::{Revocation, StoredCredential};

/// Who revoked a held credential when its status list showed it.
pub const BY_STATUS_LIST: &str = "status list";

/// A held credential's status now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldStatus {
    Active,
    Expired,
    Revoked,
}

pub fn status_of(c: &StoredCredential, now_secs: u64) -> HeldStatus {
    if c.revocation.is_some() {
        HeldStatus::Revoked
    } else if c.expires.is_some_and(|exp| exp <= now_secs) {
        HeldStatus::Expired
    } else {
        HeldStatus::Active
    }
}

/// Checks the status list of a held credential now and keeps the outcome:
/// a set revocation bit revokes it; a list that cannot be read leaves its
/// status as it was and says why in `status_check_error`.
pub async fn refresh(v: &Verifier, wallet: &str, credential_id: &str) -> Result<StoredCredential> {
    let held = v.core.store.credential(wallet, credential_id)?;
    let outcome = match entries(&held) {
        None => Err("the credential names no status list".to_string()),
        Some(entries) => status::states(v, &held.issuer, &entries).await,
    };
    let now = crate::now_ms();
    v.core.store.transact(|tx| {
        let mut c = tx.credential(wallet, credential_id)?;
        c.status_checked_at_ms = Some(now);
        c.status_check_error = outcome.as_ref().err().cloned();
        let revoked = outcome
            .as_ref()
            .is_ok_and(|states| states.iter().any(|s| s.set && s.purpose == "revocation"));
        if revoked && c.revocation.is_none() {
            c.revocation = Some(Revocation {
                at_ms: now,
                reason: "the issuer's status list marks it revoked".into(),
                by: BY_STATUS_LIST.into(),
            });
        }
        tx.put_credential(&c)?;
        Ok(c)
    })
}

/// The `credentialStatus` of a held credential's JWT (verified when it
/// was received).
fn entries(c: &StoredCredential) -> Option<Value> {
    let jws = crate::vc::parse_jwt(&c.jwt).ok()?;
    credential_of(&jws.payload)?
        .get("credentialStatus")
        .cloned()
}
