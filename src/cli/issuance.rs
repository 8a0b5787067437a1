//! `agentd offer …`, `credential …` and `issue-custodial`: Issue
//! Credential 3.0 from both sides, and the credentials a wallet holds
//! (`record …` is in `record.rs`).

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use agentd::rpc::proto::{
    self, holder_service_client::HolderServiceClient,
    issuance_service_client::IssuanceServiceClient,
};

use super::client::{Daemon, Paging, ok};
use super::output::{enum_name, parse_enum, print};
use super::query::Search;

/// What a credential says: shared by `offer create` and `issue-custodial`.
#[derive(Args)]
pub struct Spec {
    /// A claim, NAME=VALUE (the value is a string); repeatable.
    #[arg(long = "claim", value_name = "NAME=VALUE", value_parser = claim)]
    claims: Vec<(String, String)>,
    /// Claims as a JSON object (any JSON values); --claim entries are added.
    #[arg(long)]
    claims_json: Option<String>,
    /// A credential type besides VerifiableCredential; repeatable.
    #[arg(long = "type", value_name = "TYPE")]
    types: Vec<String>,
    /// Schema id, written into the credential's credentialSchema.
    #[arg(long, default_value = "", hide_default_value = true)]
    schema: String,
    /// Seconds from issuance to the credential's expiry; 0: none.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    validity: u64,
    /// The same key returns the same record instead of a second one.
    #[arg(long, default_value = "", hide_default_value = true)]
    idempotency_key: String,
    /// A did:key of the issuing wallet; default: the template's, else the
    /// wallet's issuer DID.
    #[arg(long, default_value = "", hide_default_value = true)]
    issuer_did: String,
    /// A template of the wallet (`agentd template list`): its types, schema
    /// and validity bounds apply, and the claims must meet its schema.
    #[arg(long, value_name = "ID", default_value = "", hide_default_value = true)]
    template: String,
    /// Your own ids for the offer, stored and filterable (`record list`).
    #[arg(long, value_name = "ID", default_value = "", hide_default_value = true)]
    correlation_id: String,
    #[arg(long, value_name = "ID", default_value = "", hide_default_value = true)]
    reference_id: String,
    /// The collection (a batch, a campaign) to file the offer in.
    #[arg(long, value_name = "ID", default_value = "", hide_default_value = true)]
    collection_id: String,
    /// Refuse if the holder already has a live offer or credential of the
    /// same template (or types) with the same claims.
    #[arg(long)]
    refuse_duplicate: bool,
}

fn claim(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .ok_or_else(|| "expected NAME=VALUE".into())
}

impl Spec {
    /// The offer these flags describe, on no connection yet (a claim link's).
    fn offer(self, automatic: bool, expires_in: u64) -> anyhow::Result<proto::CreateOfferRequest> {
        Ok(proto::CreateOfferRequest {
            claims_json: self.claims_json()?,
            types: self.types,
            schema_id: self.schema,
            validity_period_secs: self.validity,
            automatic_issuance: automatic,
            idempotency_key: self.idempotency_key,
            issuer_did: self.issuer_did,
            expires_in_secs: expires_in,
            template_id: self.template,
            correlation_id: self.correlation_id,
            reference_id: self.reference_id,
            collection_id: self.collection_id,
            refuse_duplicate: self.refuse_duplicate,
            ..Default::default()
        })
    }

    /// --claims-json with the --claim entries added, as the JSON text requests carry.
    fn claims_json(&self) -> anyhow::Result<String> {
        let mut claims: Map<String, Value> = match &self.claims_json {
            Some(json) => serde_json::from_str(json).context("--claims-json: not a JSON object")?,
            None => Map::new(),
        };
        for (name, value) in &self.claims {
            claims.insert(name.clone(), value.clone().into());
        }
        Ok(Value::Object(claims).to_string())
    }
}

// Parsed once per process: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum OfferAction {
    /// Issuer: offers a credential on an active connection.
    Create {
        /// The active connection to the holder.
        #[arg(long, value_name = "ID")]
        connection: String,
        #[command(flatten)]
        spec: Spec,
        /// Issue as soon as the holder's request arrives.
        #[arg(long)]
        automatic: bool,
        /// The offer expires this many seconds from now; 0: never.
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        expires_in: u64,
        /// Shown to the holder with the offer.
        #[arg(long, default_value = "", hide_default_value = true)]
        comment: String,
        /// Attachment format: prism/jwt (default), jwt_vc_json or vc+jwt.
        #[arg(long, default_value = "", hide_default_value = true)]
        format: String,
        /// Keep it as a draft: checked and stored, sent by `offer send`.
        #[arg(long)]
        draft: bool,
        /// The credential's expiry, Unix seconds (instead of --validity).
        #[arg(long, value_name = "UNIX_SECS", default_value_t = 0)]
        expires_at: u64,
    },
    /// Issuer: a claim link for a wallet we have no connection with: an
    /// invitation carrying the offer, printed as a URL, and as QR codes with
    /// --qr (PNG) or --svg.
    ClaimLink {
        #[command(flatten)]
        spec: Spec,
        /// Issue as soon as the holder's request arrives.
        #[arg(long)]
        automatic: bool,
        /// The offer (and so the link) expires this many seconds from now.
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        expires_in: u64,
        /// Shown by the wallet that scans it.
        #[arg(long, default_value = "", hide_default_value = true)]
        label: String,
        #[arg(long, value_name = "FILE")]
        qr: Option<std::path::PathBuf>,
        #[arg(long, value_name = "FILE")]
        svg: Option<std::path::PathBuf>,
    },
    /// Issuer: edits a draft (each flag given replaces the draft's).
    Update {
        record_id: String,
        /// The claims, a JSON object (replacing all of them).
        #[arg(long)]
        claims_json: Option<String>,
        #[arg(long, value_name = "SECS")]
        validity: Option<u64>,
        #[arg(long, value_name = "SECS")]
        expires_in: Option<u64>,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Issuer: sends a draft.
    Send { record_id: String },
    /// Issuer: withdraws an offer the holder has not claimed; the holder is told.
    Withdraw {
        record_id: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        reason: String,
    },
    /// Issuer: discards a draft (it is abandoned, never sent).
    Discard { record_id: String },
    /// Issuer: up to 1,000 offers from a JSON Lines file (one CreateOfferRequest
    /// object per line, `-` for stdin); one line per item, created or failed.
    Bulk {
        #[arg(value_name = "FILE")]
        file: String,
        /// Retrying with the same key makes nothing twice.
        #[arg(long, default_value = "", hide_default_value = true)]
        idempotency_key: String,
    },
    /// Holder: the offers received and not answered yet.
    List {
        #[command(flatten)]
        search: Search,
        #[command(flatten)]
        paging: Paging,
    },
    /// Holder: accepts an offer (its record id); the credential follows.
    Accept {
        record_id: String,
        /// A did:key of the wallet as the subject; default: a fresh one.
        #[arg(long, default_value = "", hide_default_value = true)]
        subject_did: String,
    },
    /// Holder: rejects an offer, telling the issuer why.
    Reject {
        record_id: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        reason: String,
    },
}

/// Runs one `offer` action.
pub async fn offer(d: Daemon, action: OfferAction) -> anyhow::Result<()> {
    let wallet_id = d.wallet.clone();
    let mut holder = HolderServiceClient::new(d.svc());
    let mut c = IssuanceServiceClient::new(d.svc());
    match action {
        OfferAction::Create {
            connection,
            spec,
            automatic,
            expires_in,
            comment,
            format,
            draft,
            expires_at,
        } => {
            let r = proto::CreateOfferRequest {
                wallet_id,
                connection_id: connection,
                comment,
                format,
                draft,
                credential_expires_at: expires_at,
                ..spec.offer(automatic, expires_in)?
            };
            d.out.one(&ok(c.create_offer(r).await)?)?;
        }
        OfferAction::ClaimLink {
            spec,
            automatic,
            expires_in,
            label,
            qr,
            svg,
        } => {
            super::bulk::claim_link(&d, spec.offer(automatic, expires_in)?, label, qr, svg).await?
        }
        OfferAction::Update {
            record_id,
            claims_json,
            validity,
            expires_in,
            comment,
        } => {
            let r = proto::UpdateDraftRequest {
                wallet_id,
                record_id,
                claims_json,
                validity_period_secs: validity,
                expires_in_secs: expires_in,
                comment,
            };
            d.out.one(&ok(c.update_draft(r).await)?)?;
        }
        OfferAction::Send { record_id } => {
            let r = proto::RecordRequest {
                wallet_id,
                record_id,
            };
            d.out.one(&ok(c.send_offer(r).await)?)?;
        }
        OfferAction::Withdraw { record_id, reason } => {
            let r = proto::WithdrawOfferRequest {
                wallet_id,
                record_id,
                reason,
            };
            d.out.one(&ok(c.withdraw_offer(r).await)?)?;
        }
        OfferAction::Discard { record_id } => {
            let r = proto::RecordRequest {
                wallet_id,
                record_id,
            };
            d.out.one(&ok(c.discard_draft(r).await)?)?;
        }
        OfferAction::Bulk {
            file,
            idempotency_key,
        } => super::bulk::offers(&d, &file, idempotency_key).await?,
        OfferAction::List { search, paging } => {
            let query = search.query()?;
            d.list(&paging, async |page| {
                holder
                    .list_offers(proto::ListOffersRequest {
                        wallet_id: wallet_id.clone(),
                        page: Some(page),
                        query: query.clone(),
                    })
                    .await
            })
            .await?;
        }
        OfferAction::Accept {
            record_id,
            subject_did,
        } => {
            let r = proto::AcceptOfferRequest {
                wallet_id,
                record_id,
                subject_did,
            };
            d.out.one(&ok(holder.accept_offer(r).await)?)?;
        }
        OfferAction::Reject { record_id, reason } => {
            let r = proto::RejectOfferRequest {
                wallet_id,
                record_id,
                reason,
            };
            d.out.one(&ok(holder.reject_offer(r).await)?)?;
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum CredentialAction {
    /// Lists the wallet's credentials.
    List {
        /// Only credentials of this type.
        #[arg(
            long = "type",
            value_name = "TYPE",
            default_value = "",
            hide_default_value = true
        )]
        r#type: String,
        /// Only credentials with this status (active, expired, revoked).
        #[arg(long, value_name = "STATUS", value_parser = parse_enum::<proto::CredentialStatus>)]
        status: Option<i32>,
        /// Check the status lists of the listed credentials first.
        #[arg(long)]
        check_status: bool,
        #[command(flatten)]
        search: Search,
        #[command(flatten)]
        paging: Paging,
    },
    /// Shows one credential, with its VC-JWT.
    Get {
        credential_id: String,
        /// Check its status list first.
        #[arg(long)]
        check_status: bool,
    },
    /// Checks a credential's status list now and shows the credential.
    Refresh { credential_id: String },
    /// Issuer: revokes credentials (by record or credential id) with a reason;
    /// more than one id goes in one call.
    Revoke {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        #[arg(long, default_value = "", hide_default_value = true)]
        reason: String,
    },
    /// Deletes a credential.
    Delete { credential_id: String },
    /// The first credential of a type (NOT_FOUND if none).
    Match {
        #[arg(value_name = "TYPE")]
        r#type: String,
    },
}

/// Runs one `credential` action.
pub async fn credential(d: Daemon, action: CredentialAction) -> anyhow::Result<()> {
    let wallet_id = d.wallet.clone();
    let mut c = HolderServiceClient::new(d.svc());
    // Get and Delete take the same request.
    let by_id = |credential_id, check_status| proto::GetCredentialRequest {
        wallet_id: wallet_id.clone(),
        credential_id,
        check_status,
    };
    match action {
        CredentialAction::List {
            r#type,
            status,
            check_status,
            search,
            paging,
        } => {
            let query = search.query()?;
            d.list(&paging, async |page| {
                c.list_credentials(proto::ListCredentialsRequest {
                    query: query.clone(),
                    wallet_id: wallet_id.clone(),
                    r#type: r#type.clone(),
                    page: Some(page),
                    status: status.unwrap_or_default(),
                    check_status,
                })
                .await
            })
            .await?;
        }
        CredentialAction::Get {
            credential_id,
            check_status,
        } => {
            d.out.one(&ok(c
                .get_credential(by_id(credential_id, check_status))
                .await)?)?;
        }
        CredentialAction::Refresh { credential_id } => {
            d.out
                .one(&ok(c.refresh_status(by_id(credential_id, false)).await)?)?;
        }
        CredentialAction::Revoke { ids, reason } => {
            revoke(&d, ids, reason).await?;
        }
        CredentialAction::Delete { credential_id } => {
            ok(c.delete_credential(by_id(credential_id.clone(), false))
                .await)?;
            // The response is empty: say what happened.
            print(if d.out.json {
                "{}".into()
            } else {
                format!("deleted {credential_id}")
            })?;
        }
        CredentialAction::Match { r#type } => {
            let r = proto::MatchCredentialRequest {
                wallet_id: wallet_id.clone(),
                r#type,
            };
            d.out.one(&ok(c.match_credential(r).await)?)?;
        }
    }
    Ok(())
}

/// One id: RevokeCredential, the record shown. More: RevokeCredentials,
/// a line per id with its outcome.
async fn revoke(d: &Daemon, mut ids: Vec<String>, reason: String) -> anyhow::Result<()> {
    let mut c = IssuanceServiceClient::new(d.svc());
    let wallet_id = d.wallet.clone();
    if ids.len() == 1 {
        let r = proto::RevokeCredentialRequest {
            wallet_id,
            id: ids.remove(0),
            reason,
        };
        return Ok(d.out.one(&ok(c.revoke_credential(r).await)?)?);
    }
    let r = proto::RevokeCredentialsRequest {
        wallet_id,
        ids,
        reason,
    };
    for result in ok(c.revoke_credentials(r).await)?.results {
        let outcome = enum_name::<proto::RevokeOutcome>(result.outcome);
        print(if d.out.json {
            serde_json::json!({ "id": result.id, "outcome": outcome }).to_string()
        } else {
            format!("{}  {outcome}", result.id)
        })?;
    }
    Ok(())
}

/// `issue-custodial`: the issuer is --wallet, the holder --holder.
#[derive(Args)]
pub struct Custodial {
    /// The holder's wallet, in the same daemon.
    #[arg(long, value_name = "WALLET")]
    holder: String,
    #[command(flatten)]
    spec: Spec,
    /// A did:key of the holder wallet as the subject; default: a fresh one.
    #[arg(long, default_value = "", hide_default_value = true)]
    subject_did: String,
    /// How long the daemon waits for the holder's credential (seconds, at most 60).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    wait: u32,
    /// The credential's expiry, Unix seconds (instead of --validity).
    #[arg(long, value_name = "UNIX_SECS", default_value_t = 0)]
    expires_at: u64,
}

/// Issues custodially, announcing the wait on stderr.
pub async fn custodial(d: Daemon, args: Custodial) -> anyhow::Result<()> {
    let issuer = if d.wallet.is_empty() {
        "default"
    } else {
        &d.wallet
    };
    eprintln!(
        "issuing from wallet {issuer} to wallet {}: waiting up to {} s for the holder's credential…",
        args.holder, args.wait
    );
    let r = proto::IssueCustodialRequest {
        wallet_id: d.wallet.clone(),
        holder_wallet_id: args.holder,
        claims_json: args.spec.claims_json()?,
        types: args.spec.types,
        schema_id: args.spec.schema,
        validity_period_secs: args.spec.validity,
        idempotency_key: args.spec.idempotency_key,
        issuer_did: args.spec.issuer_did,
        subject_did: args.subject_did,
        wait_ms: args.wait.saturating_mul(1000),
        template_id: args.spec.template,
        correlation_id: args.spec.correlation_id,
        reference_id: args.spec.reference_id,
        collection_id: args.spec.collection_id,
        refuse_duplicate: args.spec.refuse_duplicate,
        credential_expires_at: args.expires_at,
    };
    let mut c = IssuanceServiceClient::new(d.svc());
    d.out.one(&ok(c.issue_custodial(r).await)?)?;
    Ok(())
}
