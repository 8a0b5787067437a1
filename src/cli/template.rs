//! `agentd template …`: an issuer wallet's credential templates.

use anyhow::Context;
use clap::Subcommand;

use agentd::rpc::proto::{self, template_service_client::TemplateServiceClient};

use super::client::{Daemon, Paging, ok};
use super::query::Search;

#[derive(Subcommand)]
pub enum TemplateAction {
    /// Makes a template; the schema (a JSON Schema for the claims) is read from a file.
    Create {
        #[arg(long)]
        name: String,
        /// A credential type besides VerifiableCredential; repeatable.
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        /// An @context its credentials add (an http(s) URL); repeatable.
        #[arg(long = "context", value_name = "URL")]
        contexts: Vec<String>,
        /// The JSON Schema file (`-` for stdin).
        #[arg(long, value_name = "FILE")]
        schema: String,
        /// Validity of its credentials when an offer names none; 0: no expiry.
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        default_validity: u64,
        /// The longest validity an offer may ask; 0: no bound.
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        max_validity: u64,
        /// The did:key that signs its credentials by default.
        #[arg(long, default_value = "", hide_default_value = true)]
        issuer_did: String,
    },
    /// Shows one template with its schema.
    Get { template_id: String },
    /// Lists the wallet's templates.
    List {
        /// Archived ones too.
        #[arg(long)]
        archived: bool,
        #[command(flatten)]
        search: Search,
        #[command(flatten)]
        paging: Paging,
    },
    /// Archives a template: no offer may name it afterwards.
    Archive { template_id: String },
}

pub async fn run(d: Daemon, action: TemplateAction) -> anyhow::Result<()> {
    let wallet_id = d.wallet.clone();
    let mut c = TemplateServiceClient::new(d.svc());
    let by_id = |template_id| proto::GetTemplateRequest {
        wallet_id: wallet_id.clone(),
        template_id,
    };
    match action {
        TemplateAction::Create {
            name,
            types,
            contexts,
            schema,
            default_validity,
            max_validity,
            issuer_did,
        } => {
            let schema_json = if schema == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading stdin")?
            } else {
                std::fs::read_to_string(&schema).with_context(|| format!("reading {schema}"))?
            };
            let r = proto::CreateTemplateRequest {
                wallet_id: wallet_id.clone(),
                name,
                types,
                contexts,
                schema_json,
                default_validity_secs: default_validity,
                max_validity_secs: max_validity,
                issuer_did,
            };
            d.out.one(&ok(c.create_template(r).await)?)?;
        }
        TemplateAction::Get { template_id } => {
            d.out.one(&ok(c.get_template(by_id(template_id)).await)?)?;
        }
        TemplateAction::List {
            archived,
            search,
            paging,
        } => {
            let query = search.query()?;
            d.list(&paging, async |page| {
                c.list_templates(proto::ListTemplatesRequest {
                    wallet_id: wallet_id.clone(),
                    include_archived: archived,
                    page: Some(page),
                    query: query.clone(),
                })
                .await
            })
            .await?;
        }
        TemplateAction::Archive { template_id } => {
            d.out
                .one(&ok(c.archive_template(by_id(template_id)).await)?)?;
        }
    }
    Ok(())
}
