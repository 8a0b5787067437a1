//! Claim links: an Out-of-Band 2.0 invitation carrying a credential offer
//! as an attachment, so one scan both connects a wallet and hands it the
//! offer. The link works once — the invitation's connection binds the
//! first wallet to answer; a second is refused and its connection fails —
//! and the offer expires as any other.

use serde_json::Map;

use super::machine::Event;
use super::{Inputs, Issuance, OfferSpec, messages};
use crate::didcomm::Attachment;
use crate::error::{Error, Result};
use crate::protocols::connections;
use crate::store::CredentialRecord;
use crate::wallet;

impl Issuance {
    /// Makes a claim link for `spec` (its connection is the link's own, so
    /// `spec.connection_id` is ignored): an invitation labelled `label`, a
    /// new connection waiting for it, and the offer (OfferSent: it travels
    /// in the invitation), stored together.
    pub async fn create_claim_link(
        &self,
        wallet: &str,
        spec: &OfferSpec,
        label: &str,
    ) -> Result<CredentialRecord> {
        if spec.draft {
            return Err(Error::InvalidArgument(
                "a claim link's offer is sent as it is made; it cannot be a draft".into(),
            ));
        }
        let core = &self.core;
        let (did, mut invitation) = connections::new_invitation(
            core,
            wallet,
            label,
            "issue-vc",
            "Connect to receive a credential",
        );
        let prepared = self.prepare_on(wallet, spec, &invitation.connection)?;
        let mut rec = prepared.fresh;
        // Its sender is the invitation's: not repeated, a QR code has little room.
        let offer = messages::offer(&rec);
        let mut data = Map::new();
        data.insert(
            "json".into(),
            serde_json::to_value(&offer).map_err(|e| Error::Internal(e.to_string()))?,
        );
        invitation.message.attachments = vec![Attachment {
            id: Some(offer.id.clone()),
            media_type: Some("application/json".into()),
            format: None,
            data,
            extra: Map::new(),
        }];
        invitation.message.expires_time = offer.expires_time;
        let url = connections::invitation_url(&core.endpoint, &invitation.message);
        if !crate::qr::fits(&url) {
            return Err(Error::InvalidArgument(format!(
                "the claim link would be {} bytes, too long for a QR code (2,953): \
                 fewer or shorter claims, or a connection and CreateOffer",
                url.len()
            )));
        }
        rec.claim_link = Some(url);
        let connection = invitation.connection;
        let guard = prepared.guard;
        self.act_on(move |io| {
            if let Some(k) = &rec.idempotency_key
                && let Some(existing) = io.tx.record_by_idempotency(&rec.wallet_id, k)?
            {
                return Ok(existing);
            }
            wallet::put_did(io.tx, &did)?;
            io.tx.put_connection(&connection)?;
            let mut made = rec.clone();
            io.advance(None, &mut made, Event::OfferAttached, &Inputs::default())?;
            io.tx.set_guard(&made.wallet_id, &guard, &made.id)?;
            Ok(made)
        })
        .await
    }
}

/// A claim link's URL, from its record.
pub fn link_of(rec: &CredentialRecord) -> Result<&str> {
    rec.claim_link
        .as_deref()
        .ok_or_else(|| Error::not_found("claim link of record", rec.id.clone()))
}
