//! Subcommands of the `agentd` binary beyond `run`: the demo, and
//! `agentd <group> <action>`, a client for every gRPC call of a running
//! daemon (one module per group of calls).

pub mod admin;
mod bulk;
mod client;
mod connection;
pub mod demo;
mod events;
pub mod harness;
mod issuance;
mod output;
mod query;
mod record;
mod template;
mod verify;
mod wallet;

use client::{Daemon, Target};

/// The client subcommands; each connects to the daemon named by [`Target`].
#[derive(clap::Subcommand)]
pub enum Client {
    /// Wallets (tenants) of the daemon.
    Wallet(Group<wallet::WalletAction>),
    /// Control-plane tokens (admin): create for a wallet and role, list, revoke.
    Token(Group<wallet::TokenAction>),
    /// DIDs of a wallet, and resolving any did:key or did:peer:2.
    Did(Group<wallet::DidAction>),
    /// Connections with peer agents (Out-of-Band invitations, trust ping, discover features).
    Connection(Group<connection::Action>),
    /// Credential templates of an issuer wallet: types, a JSON Schema for the claims, validity bounds.
    Template(Group<template::TemplateAction>),
    /// Credential offers: `create` as the issuer; `list`, `accept`, `reject` as the holder.
    Offer(Group<issuance::OfferAction>),
    /// Issue-credential records of both roles; `issue` for a request received.
    Record(Group<record::RecordAction>),
    /// Credentials the wallet holds, their status; `revoke` as the issuer.
    Credential(Group<issuance::CredentialAction>),
    /// Verifies a VC-JWT or VP-JWT (the JWT, a file, or - for stdin): one line
    /// per check. Exits 3 when a check fails.
    Verify {
        #[command(flatten)]
        target: Target,
        #[arg(value_name = "JWT|FILE")]
        input: String,
    },
    /// The issuers the wallet trusts (VerifyCredential's TrustRegistryMembership).
    Trust(Group<verify::TrustAction>),
    /// Issues from --wallet to --holder, both wallets of this daemon, in one call.
    IssueCustodial {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        args: issuance::Custodial,
    },
    /// Writes a consistent backup of the running daemon to a new file (admin).
    Backup {
        #[command(flatten)]
        target: Target,
        /// The file to write; it must not exist.
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// Follows record events live, one line each, until Ctrl-C.
    Events {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        args: events::Follow,
    },
}

/// A group: the daemon flags, then one of its actions.
#[derive(clap::Args)]
pub struct Group<A: clap::Subcommand> {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    action: A,
}

impl Client {
    /// Connects to the daemon and runs the action.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.dispatch().await {
            // The reader went away (`| head`): what it wanted was printed.
            Err(e)
                if e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    async fn dispatch(self) -> anyhow::Result<()> {
        match self {
            Client::Wallet(g) => wallet::wallet(Daemon::connect(g.target).await?, g.action).await,
            Client::Token(g) => wallet::token(Daemon::connect(g.target).await?, g.action).await,
            Client::Did(g) => wallet::did(Daemon::connect(g.target).await?, g.action).await,
            Client::Connection(g) => {
                connection::run(Daemon::connect(g.target).await?, g.action).await
            }
            Client::Template(g) => template::run(Daemon::connect(g.target).await?, g.action).await,
            Client::Offer(g) => issuance::offer(Daemon::connect(g.target).await?, g.action).await,
            Client::Record(g) => record::record(Daemon::connect(g.target).await?, g.action).await,
            Client::Credential(g) => {
                issuance::credential(Daemon::connect(g.target).await?, g.action).await
            }
            Client::Verify { target, input } => {
                if !verify::verify(Daemon::connect(target).await?, input).await? {
                    std::process::exit(verify::INVALID_EXIT);
                }
                Ok(())
            }
            Client::Trust(g) => verify::trust(Daemon::connect(g.target).await?, g.action).await,
            Client::IssueCustodial { target, args } => {
                issuance::custodial(Daemon::connect(target).await?, args).await
            }
            Client::Backup { target, to } => {
                admin::backup(Daemon::connect(target).await?, &to).await
            }
            Client::Events { target, args } => {
                events::follow(Daemon::connect(target).await?, args).await
            }
        }
    }
}
