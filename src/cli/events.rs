//! `agentd events`: record state changes, followed live.

use clap::Args;

use agentd::rpc::proto::{self, RecordState, Role, event_service_client::EventServiceClient};

use super::client::{Daemon, failure, ok};
use super::output::{Show, enum_name, print};
use super::record::RecordFilter;

/// Which events and where to start. --wallet filters too; without it, every wallet.
#[derive(Args)]
pub struct Follow {
    #[command(flatten)]
    filter: RecordFilter,
    /// Replay stored events after this seq first.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    after_seq: u64,
    /// Replay every stored event first.
    #[arg(long)]
    from_start: bool,
}

/// Prints matching events as they arrive, until Ctrl-C or the stream ends.
pub async fn follow(d: Daemon, f: Follow) -> anyhow::Result<()> {
    let (role, state, thid) = f.filter.parts();
    let r = proto::SubscribeRequest {
        wallet_id: d.wallet.clone(),
        role,
        state,
        thid,
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
                Some(e) if d.out.json => print(e.to_json())?,
                Some(e) => print(line(&e))?,
                None => return Ok(()),
            },
        }
    }
}

/// `   7  default  Issuer  CredentialSent → CredentialSent  <record id>  (reason)`.
fn line(e: &proto::RecordEvent) -> String {
    let old = match e.old_state {
        0 => "(new)".to_string(),
        s => enum_name::<RecordState>(s),
    };
    let reason = if e.reason.is_empty() {
        String::new()
    } else {
        format!("  ({})", e.reason)
    };
    format!(
        "{:>5}  {}  {:<6}  {old:>19} → {:<19}  {}{reason}",
        e.seq,
        e.wallet_id,
        enum_name::<Role>(e.role),
        enum_name::<RecordState>(e.new_state),
        e.record_id,
    )
}
