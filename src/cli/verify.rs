//! `agentd verify <jwt|file>` (one line per check) and `agentd trust …`,
//! the wallet's trusted issuers that `TrustRegistryMembership` checks.

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use agentd::rpc::proto::{self, verifier_service_client::VerifierServiceClient};

use super::client::{Daemon, Paging, ok};
use super::output::print;

/// Exit status of `agentd verify` when the credential is not valid (an
/// error reaching the daemon or a JWT it cannot decode exits 1).
pub const INVALID_EXIT: i32 = 3;

/// Verifies `input` (a JWT, a file holding one, or `-` for stdin) and
/// prints each check; Ok(false) when a check failed.
pub async fn verify(d: Daemon, input: String) -> anyhow::Result<bool> {
    let jwt = if input == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")?
    } else if input.matches('.').count() == 2 && !std::path::Path::new(&input).exists() {
        input
    } else {
        std::fs::read_to_string(&input).with_context(|| format!("reading {input}"))?
    };
    let mut c = VerifierServiceClient::new(d.svc());
    let r = ok(c
        .verify_credential(proto::VerifyCredentialRequest {
            wallet_id: d.wallet.clone(),
            jwt: jwt.trim().to_string(),
        })
        .await)?;
    if d.out.json {
        print(report_json(&r))?;
    } else {
        print_report(&r)?;
    }
    Ok(r.valid)
}

fn check_json(c: &proto::Check) -> Value {
    json!({ "name": c.name, "valid": c.valid, "applicable": c.applicable, "messages": c.messages })
}

fn report_json(r: &proto::VerifyCredentialResponse) -> Value {
    json!({
        "valid": r.valid,
        "holder": r.holder,
        "presentation_checks": r.presentation_checks.iter().map(check_json).collect::<Vec<_>>(),
        "credentials": r.credentials.iter().map(|c| json!({
            "id": c.id, "issuer": c.issuer, "subject": c.subject, "types": c.types,
            "valid": c.valid, "checks": c.checks.iter().map(check_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn print_report(r: &proto::VerifyCredentialResponse) -> std::io::Result<()> {
    print(if r.valid { "VALID" } else { "NOT VALID" })?;
    if !r.presentation_checks.is_empty() {
        print(format_args!("presentation by {}", r.holder))?;
        print_checks(&r.presentation_checks)?;
    }
    for c in &r.credentials {
        print(format_args!(
            "credential {} ({}) issued by {} to {}",
            c.id,
            c.types.join(", "),
            c.issuer,
            c.subject
        ))?;
        print_checks(&c.checks)?;
    }
    Ok(())
}

/// `  ✓ SignatureVerification`, `  ✗ CredentialStatus  why`, `  - … (n/a)`.
fn print_checks(checks: &[proto::Check]) -> std::io::Result<()> {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in checks {
        let mark = match (c.valid, c.applicable) {
            (false, _) => "✗",
            (true, true) => "✓",
            (true, false) => "-",
        };
        print(format!("  {mark} {:<width$}  {}", c.name, c.messages.join("; ")).trim_end())?;
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum TrustAction {
    /// Trusts an issuer DID; once any is listed, TrustRegistryMembership applies.
    Add {
        did: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        label: String,
    },
    /// Lists the trusted issuers.
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Stops trusting an issuer DID.
    Remove { did: String },
}

pub async fn trust(d: Daemon, action: TrustAction) -> anyhow::Result<()> {
    let wallet_id = d.wallet.clone();
    let mut c = VerifierServiceClient::new(d.svc());
    match action {
        TrustAction::Add { did, label } => {
            let r = proto::AddTrustedIssuerRequest {
                wallet_id,
                did,
                label,
            };
            d.out.one(&ok(c.add_trusted_issuer(r).await)?)?;
        }
        TrustAction::List { paging } => {
            d.list(&paging, async |page| {
                c.list_trusted_issuers(proto::ListTrustedIssuersRequest {
                    wallet_id: wallet_id.clone(),
                    page: Some(page),
                })
                .await
            })
            .await?;
        }
        TrustAction::Remove { did } => {
            let r = proto::RemoveTrustedIssuerRequest {
                wallet_id,
                did: did.clone(),
            };
            ok(c.remove_trusted_issuer(r).await)?;
            print(if d.out.json {
                "{}".into()
            } else {
                format!("removed {did}")
            })?;
        }
    }
    Ok(())
}
