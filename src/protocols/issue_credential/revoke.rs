//! Revoking issued credentials: the record notes who, when and why, the
//! credential's status-list bit is set, and the holder is told in the
//! thread, all in one transaction (one for a whole bulk call, so its
//! revocations make one new status list).

use super::{Issuance, revocation_notification};
use crate::after::After;
use crate::didcomm::outbox;
use crate::error::{Error, Result};
use crate::store::{CredentialRecord, Revocation, Role, StoreTx};

/// Most ids one `revoke_all` takes.
pub const MAX_BULK: usize = 1000;

/// What became of one id given to [`Issuance::revoke_all`].
#[derive(Debug, Clone, PartialEq)]
pub enum Revoked {
    /// Revoked now; the record as it is.
    Now(CredentialRecord),
    /// Revoked before; the record, unchanged.
    Already(CredentialRecord),
    /// No issued credential of the wallet has this record or credential id.
    NotFound,
}

impl Issuance {
    /// Revokes one issued credential, named by its record id or its
    /// credential id. A second revocation is refused and changes nothing.
    pub async fn revoke(&self, wallet: &str, id: &str, reason: &str) -> Result<CredentialRecord> {
        match self
            .revoke_all(wallet, &[id.to_string()], reason)
            .await?
            .pop()
        {
            Some(Revoked::Now(rec)) => Ok(rec),
            Some(Revoked::Already(rec)) => Err(Error::FailedPrecondition(format!(
                "credential {} was already revoked",
                rec.credential_id.unwrap_or_default()
            ))),
            _ => Err(Error::not_found("issued credential", id)),
        }
    }

    /// Revokes up to [`MAX_BULK`] issued credentials in one transaction;
    /// one outcome per id, in order.
    pub async fn revoke_all(
        &self,
        wallet: &str,
        ids: &[String],
        reason: &str,
    ) -> Result<Vec<Revoked>> {
        if ids.len() > MAX_BULK {
            return Err(Error::InvalidArgument(format!(
                "{} ids; at most {MAX_BULK} per call",
                ids.len()
            )));
        }
        let core = &self.core;
        let by = crate::actor::current();
        let (outcomes, after) = After::transact(core, |tx, after| {
            ids.iter()
                .map(|id| revoke_in(tx, after, wallet, id, reason, &by))
                .collect::<Result<Vec<_>>>()
        })?;
        after.publish(core).await?;
        Ok(outcomes)
    }
}

fn revoke_in(
    tx: &StoreTx,
    after: &mut After,
    wallet: &str,
    id: &str,
    reason: &str,
    by: &str,
) -> Result<Revoked> {
    let found = match tx.record_by_credential(wallet, id)? {
        Some(rec) => Some(rec),
        None => match tx.record(wallet, id) {
            Ok(rec) => Some(rec),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        },
    };
    let Some((cur, credential_id)) = found
        .filter(|r| r.role == Role::Issuer)
        .and_then(|r| r.credential_id.clone().map(|c| (r, c)))
    else {
        return Ok(Revoked::NotFound);
    };
    if cur.revocation.is_some() {
        return Ok(Revoked::Already(cur));
    }
    if let Some(slot) = &cur.status {
        tx.revoke_status_index(&slot.list_id, slot.index)?;
    }
    let now = crate::now_ms();
    let mut rec = cur.clone();
    rec.revocation = Some(Revocation {
        at_ms: now,
        reason: reason.to_string(),
        by: by.to_string(),
    });
    rec.version += 1;
    rec.updated_at_ms = now;
    if !by.is_empty() {
        rec.updated_by = by.to_string();
    }
    tx.put_record(Some(&cur), &rec)?;
    let notice = revocation_notification::revoke(&rec.thid, &credential_id, reason);
    outbox::enqueue(
        tx,
        after,
        &rec.wallet_id,
        &rec.our_did,
        &rec.their_did,
        &notice,
    )?;
    Ok(Revoked::Now(rec))
}
