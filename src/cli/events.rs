//! `agentd events`: record state changes, followed live.

use clap::Args;

use agentd::rpc::proto::{self, RecordState, Role, event_service_client::EventServiceClient};

use super::client::{Daemon, failure, ok};
use super::output::parse_enum;

/// Filters and where to start. --wallet filters too; without it, every wallet.
#[derive(Args)]
pub struct Follow {
    /// issuer or holder.
    #[arg(long, value_parser = parse_enum::<Role>)]
    role: Option<i32>,
    /// Only events into this state.
    #[arg(long, value_parser = parse_enum::<RecordState>)]
    state: Option<i32>,
    #[arg(long, default_value = "")]
    thid: String,
    /// Replay stored events after this seq first.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    after_seq: u64,
    /// Replay every stored event first.
    #[arg(long)]
    from_start: bool,
}

pub async fn follow(d: Daemon, f: Follow) -> anyhow::Result<()> {
    let r = proto::SubscribeRequest {
        wallet_id: d.wallet.clone(),
        role: f.role.unwrap_or_default(),
        state: f.state.unwrap_or_default(),
        thid: f.thid,
        after_seq: f.after_seq,
        from_start: f.from_start,
    };
    let mut c = EventServiceClient::new(d.svc());
    let mut stream = ok(c.subscribe(r).await)?;
    loop {
        tokio::select! {
            // Ctrl-C is how a follower normally stops: not an error.
            _ = tokio::signal::ctrl_c() => return Ok(()),
            next = stream.message() => match next.map_err(failure)? {
                Some(e) => d.out.line(&e),
                None => return Ok(()),
            },
        }
    }
}
