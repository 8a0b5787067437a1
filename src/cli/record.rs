//! `agentd record …`: issue-credential records of both roles, and the
//! filter `record list` shares with `events`.

use clap::{Args, Subcommand};

use agentd::rpc::proto::{self, RecordState, Role, issuance_service_client::IssuanceServiceClient};

use super::client::{Daemon, Paging, ok};
use super::output::parse_enum;
use super::query::Search;

/// Which records (or their events): shared by `record list` and `events`.
#[derive(Args)]
pub struct RecordFilter {
    /// issuer or holder.
    #[arg(long, value_parser = parse_enum::<Role>)]
    role: Option<i32>,
    /// A record state, e.g. request-received or CredentialReceived.
    #[arg(long, value_parser = parse_enum::<RecordState>)]
    state: Option<i32>,
    /// One protocol thread.
    #[arg(long, default_value = "", hide_default_value = true)]
    thid: String,
}

impl RecordFilter {
    /// (role, state, thid) as requests carry them; 0 matches any.
    pub fn parts(&self) -> (i32, i32, String) {
        (
            self.role.unwrap_or_default(),
            self.state.unwrap_or_default(),
            self.thid.clone(),
        )
    }
}

// Parsed once per command: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum RecordAction {
    /// Lists the wallet's records of both roles, filtered.
    List {
        #[command(flatten)]
        filter: RecordFilter,
        /// Only records on this connection.
        #[arg(long, value_name = "ID", default_value = "", hide_default_value = true)]
        connection: String,
        /// Only offers of this template, or with this correlation, reference
        /// or collection id.
        #[arg(long, value_name = "ID", default_value = "", hide_default_value = true)]
        template: String,
        #[arg(long, value_name = "ID", default_value = "", hide_default_value = true)]
        correlation_id: String,
        #[arg(long, value_name = "ID", default_value = "", hide_default_value = true)]
        reference_id: String,
        #[arg(long, value_name = "ID", default_value = "", hide_default_value = true)]
        collection_id: String,
        #[command(flatten)]
        search: Search,
        #[command(flatten)]
        paging: Paging,
    },
    /// Shows one record.
    Get { record_id: String },
    /// Issuer: issues the credential of a record in RequestReceived.
    Issue { record_id: String },
    /// Issuer: deletes the claims of an offer that ended unclaimed.
    DeleteData { record_id: String },
}

/// Runs one `record` action.
pub async fn record(d: Daemon, action: RecordAction) -> anyhow::Result<()> {
    let wallet_id = d.wallet.clone();
    let mut c = IssuanceServiceClient::new(d.svc());
    match action {
        RecordAction::List {
            filter,
            connection,
            template,
            correlation_id,
            reference_id,
            collection_id,
            search,
            paging,
        } => {
            let query = search.query()?;
            d.list(&paging, async |page| {
                let (role, state, thid) = filter.parts();
                c.list_records(proto::ListRecordsRequest {
                    wallet_id: wallet_id.clone(),
                    role,
                    state,
                    thid,
                    connection_id: connection.clone(),
                    page: Some(page),
                    template_id: template.clone(),
                    correlation_id: correlation_id.clone(),
                    reference_id: reference_id.clone(),
                    collection_id: collection_id.clone(),
                    query: query.clone(),
                })
                .await
            })
            .await?;
        }
        RecordAction::Get { record_id } => {
            let r = proto::GetRecordRequest {
                wallet_id,
                record_id,
            };
            d.out.one(&ok(c.get_record(r).await)?)?;
        }
        RecordAction::DeleteData { record_id } => {
            let r = proto::RecordRequest {
                wallet_id,
                record_id,
            };
            d.out.one(&ok(c.delete_record_data(r).await)?)?;
        }
        RecordAction::Issue { record_id } => {
            let r = proto::IssueCredentialRequest {
                wallet_id,
                record_id,
            };
            d.out.one(&ok(c.issue_credential(r).await)?)?;
        }
    }
    Ok(())
}
