//! Drafts: an offer kept (state Draft, before OfferPending) to edit, then
//! sent or discarded. An edit is checked like a new offer (claims against
//! the template, validity bounds) before it is stored.

use serde_json::Value;

use super::actions::{require, require_active};
use super::machine::Event;
use super::{Inputs, Issuance, OfferSpec};
use crate::error::Result;
use crate::store::{CredentialRecord, RecordState, Role};

/// What an edit of a draft changes (None: kept).
#[derive(Debug, Clone, Default)]
pub struct DraftEdit {
    pub claims_json: Option<String>,
    pub validity_period_secs: Option<u64>,
    pub expires_in_secs: Option<u64>,
    pub comment: Option<String>,
}

impl Issuance {
    /// Edits a draft: its claims, validity, offer expiry or comment.
    pub async fn update_draft(
        &self,
        wallet: &str,
        record_id: &str,
        edit: DraftEdit,
    ) -> Result<CredentialRecord> {
        let seen = self.draft(wallet, record_id, "edited")?;
        let spec = OfferSpec {
            connection_id: seen.connection_id.clone(),
            claims_json: edit
                .claims_json
                .unwrap_or_else(|| Value::Object(seen.claims.clone()).to_string()),
            types: seen.types.clone(),
            // A template names its own schema; without one it is the offer's.
            schema_id: seen
                .schema_id
                .clone()
                .filter(|_| seen.template_id.is_none()),
            validity_period_secs: edit
                .validity_period_secs
                .unwrap_or(seen.validity_period_secs),
            issuer_did: Some(seen.issuer_did.clone()),
            expires_in_secs: edit.expires_in_secs.unwrap_or(seen.draft_expires_in_secs),
            comment: edit.comment.or_else(|| seen.comment.clone()),
            format: Some(seen.format.clone()),
            template_id: seen.template_id.clone(),
            draft: true,
            ..Default::default()
        };
        let checked = self.prepare(wallet, &spec)?;
        let guard = checked.guard;
        let checked = checked.fresh;
        self.act(&seen, Event::Edit, Inputs::default(), move |tx, rec| {
            tx.set_guard(&rec.wallet_id, &guard, &rec.id)?;
            rec.claims.clone_from(&checked.claims);
            rec.types.clone_from(&checked.types);
            rec.validity_period_secs = checked.validity_period_secs;
            rec.draft_expires_in_secs = checked.draft_expires_in_secs;
            rec.comment.clone_from(&checked.comment);
            Ok(())
        })
        .await
    }

    /// Sends a draft: it becomes an offer (OfferPending), its expiry
    /// counted from now. The connection must still be active.
    pub async fn send_draft(&self, wallet: &str, record_id: &str) -> Result<CredentialRecord> {
        let seen = self.draft(wallet, record_id, "sent")?;
        require_active(&self.core.store.connection(wallet, &seen.connection_id)?)?;
        self.act(&seen, Event::Send, Inputs::default(), |_, rec| {
            rec.expires_at_ms = (rec.draft_expires_in_secs > 0).then(|| {
                crate::now_ms().saturating_add(crate::secs_to_ms(rec.draft_expires_in_secs))
            });
            Ok(())
        })
        .await
    }

    /// Discards a draft: it is abandoned (kept, as every record is), never sent.
    pub async fn discard_draft(&self, wallet: &str, record_id: &str) -> Result<CredentialRecord> {
        let seen = self.draft(wallet, record_id, "discarded")?;
        let inputs = Inputs::because("the draft was discarded".into());
        self.act(&seen, Event::Abandon, inputs, |_, _| Ok(())).await
    }

    fn draft(&self, wallet: &str, record_id: &str, verb: &str) -> Result<CredentialRecord> {
        require(
            &self.core,
            wallet,
            record_id,
            Role::Issuer,
            RecordState::Draft,
            verb,
        )
    }
}
