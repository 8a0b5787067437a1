//! `agentd connection …`: invitations, connections, trust ping, discover features.

use std::time::{Duration, Instant};

use clap::Subcommand;

use agentd::rpc::proto::{
    self, ConnectionState, connection_service_client::ConnectionServiceClient,
};

use super::client::{Daemon, Paging, ok};
use super::output::{enum_name, parse_enum};

#[derive(Subcommand)]
pub enum Action {
    /// Makes an Out-of-Band invitation; give its URL to the peer.
    Invite {
        /// A name for this side, shown to the peer.
        #[arg(long, default_value = "", hide_default_value = true)]
        label: String,
        /// The invitation's goal_code and goal (what the connection is for).
        #[arg(long, default_value = "", hide_default_value = true)]
        goal_code: String,
        #[arg(long, default_value = "", hide_default_value = true)]
        goal: String,
    },
    /// Accepts a peer's invitation URL.
    Accept {
        url: String,
        /// A label for the connection on this side.
        #[arg(long, default_value = "", hide_default_value = true)]
        label: String,
        /// Wait until the inviter answers and the connection is active (seconds).
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "10")]
        wait: Option<u64>,
    },
    /// Lists the wallet's connections.
    List {
        /// Only connections in this state (invitation-sent, requested, active).
        #[arg(long, value_parser = parse_enum::<ConnectionState>)]
        state: Option<i32>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Shows one connection.
    Get { id: String },
    /// Sends a trust ping.
    Ping {
        id: String,
        /// Wait for the ping-response (seconds, at most 60).
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "5")]
        wait: Option<u32>,
    },
    /// Asks the peer which protocols it speaks.
    Features {
        id: String,
        /// Protocol URI pattern, `*` wildcards allowed.
        #[arg(long = "match", default_value = "*")]
        pattern: String,
        /// How long to wait for the answer (seconds).
        #[arg(long, value_name = "SECS", default_value_t = 5)]
        wait: u32,
    },
}

/// Runs one `connection` action.
pub async fn run(d: Daemon, action: Action) -> anyhow::Result<()> {
    let mut c = ConnectionServiceClient::new(d.svc());
    let wallet_id = d.wallet.clone();
    match action {
        Action::Invite {
            label,
            goal_code,
            goal,
        } => {
            let r = proto::CreateInvitationRequest {
                wallet_id,
                label,
                goal_code,
                goal,
            };
            d.out.one(&ok(c.create_invitation(r).await)?)?;
        }
        Action::Accept { url, label, wait } => {
            let r = proto::AcceptInvitationRequest {
                wallet_id: wallet_id.clone(),
                invitation_url: url,
                label,
            };
            let mut conn = ok(c.accept_invitation(r).await)?;
            if let Some(secs) = wait {
                eprintln!("waiting up to {secs} s for the inviter to answer…");
                let deadline = Instant::now() + Duration::from_secs(secs);
                while conn.state != ConnectionState::Active as i32 {
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "connection {} is still {} after {secs} s",
                        conn.id,
                        enum_name::<ConnectionState>(conn.state)
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let r = proto::GetConnectionRequest {
                        wallet_id: wallet_id.clone(),
                        connection_id: conn.id.clone(),
                    };
                    conn = ok(c.get_connection(r).await)?;
                }
            }
            d.out.one(&conn)?;
        }
        Action::List { state, paging } => {
            d.list(&paging, async |page| {
                c.list_connections(proto::ListConnectionsRequest {
                    wallet_id: wallet_id.clone(),
                    page: Some(page),
                    state: state.unwrap_or_default(),
                })
                .await
            })
            .await?;
        }
        Action::Get { id } => {
            let r = proto::GetConnectionRequest {
                wallet_id,
                connection_id: id,
            };
            d.out.one(&ok(c.get_connection(r).await)?)?;
        }
        Action::Ping { id, wait } => {
            if let Some(secs) = wait {
                eprintln!("waiting up to {secs} s for the ping-response…");
            }
            let r = proto::PingRequest {
                wallet_id,
                connection_id: id,
                wait_ms: wait.unwrap_or(0).saturating_mul(1000),
            };
            d.out.one(&ok(c.ping(r).await)?)?;
        }
        Action::Features { id, pattern, wait } => {
            let r = proto::DiscoverFeaturesRequest {
                wallet_id,
                connection_id: id,
                r#match: pattern,
                wait_ms: wait.saturating_mul(1000),
            };
            d.out.one(&ok(c.discover_features(r).await)?)?;
        }
    }
    Ok(())
}
