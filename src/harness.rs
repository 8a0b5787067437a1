//! Real agents on loopback for tests, demos and scenario runs. Each agent
//! has its own temporary sled directory, HTTP and gRPC on OS-chosen loopback
//! ports, and its own master key file; it runs in this process
//! ([`LocalAgent`]) or as a child process of the `agentd` binary
//! ([`ProcessAgent`], which can be killed and restarted). [`Clients`] are
//! typed gRPC clients for one agent; [`connect`] links two wallets with an
//! out-of-band invitation; [`scenario`] runs scenario files. Dropping an
//! agent (also when a test panics) stops it and removes its directory.

mod process;
pub mod scenario;

pub use process::ProcessAgent;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use crate::config::Config;
use crate::rpc::proto::{
    self, connection_service_client::ConnectionServiceClient, did_service_client::DidServiceClient,
    event_service_client::EventServiceClient, holder_service_client::HolderServiceClient,
    issuance_service_client::IssuanceServiceClient, template_service_client::TemplateServiceClient,
    verifier_service_client::VerifierServiceClient, wallet_service_client::WalletServiceClient,
};
use crate::{Agent, RunningAgent};

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("agent {name} did not start: {source}")]
    Start {
        name: String,
        source: crate::error::Error,
    },
    #[error("agent {name} did not stop cleanly: {source}")]
    Stop {
        name: String,
        source: crate::error::Error,
    },
    #[error("agent {name}: {message}")]
    Process { name: String, message: String },
    #[error("agent {name}'s database: {source}")]
    Storage {
        name: String,
        source: crate::error::Error,
    },
    #[error("not a gRPC address: {0}")]
    BadAddress(String),
    /// Temporary directories, config and log files, child processes.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("gRPC connection: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("gRPC call failed: {}", .0.message())]
    Rpc(#[from] tonic::Status),
    #[error("timed out: {0}")]
    Timeout(String),
    /// A scenario's expectation did not hold.
    #[error("{0}")]
    Check(String),
}

pub type Result<T> = std::result::Result<T, HarnessError>;

/// An agent running in this process.
pub struct LocalAgent {
    pub name: String,
    pub didcomm: SocketAddr,
    pub grpc: SocketAddr,
    pub endpoint: String,
    running: Option<RunningAgent>,
    _dir: tempfile::TempDir,
}

impl LocalAgent {
    /// Starts an agent with temporary storage on loopback ports the OS picks.
    pub async fn start(name: &str) -> Result<LocalAgent> {
        Self::start_with(name, |_| {}).await
    }

    /// [`start`](Self::start), with `configure` applied to the config last
    /// (e.g. to set an API key).
    pub async fn start_with(name: &str, configure: impl FnOnce(&mut Config)) -> Result<LocalAgent> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("agentd-{name}-"))
            .tempdir()?;
        let mut config = Config::default();
        config.storage.path = dir.path().join("agentd.sled");
        config.keys.master_key_file = dir.path().join("master.key");
        config.didcomm.listen = "127.0.0.1:0".into();
        config.grpc.listen = "127.0.0.1:0".into();
        // Loopback only, driven by the harness's own clients.
        config.grpc.auth = "none".into();
        configure(&mut config);
        // No master key given: the agent makes its own key file in `dir`.
        let running = Agent::start(config, None)
            .await
            .map_err(|source| HarnessError::Start {
                name: name.to_string(),
                source,
            })?;
        Ok(LocalAgent {
            name: name.to_string(),
            didcomm: running.didcomm_addr,
            grpc: running.grpc_addr,
            endpoint: running.endpoint.clone(),
            running: Some(running),
            _dir: dir,
        })
    }

    /// Typed gRPC clients over one channel to this agent.
    pub async fn clients(&self) -> Result<Clients> {
        Clients::connect(&self.grpc.to_string()).await
    }

    /// Stops gracefully: drains and flushes.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(running) = self.running.take() {
            running
                .shutdown()
                .await
                .map_err(|source| HarnessError::Stop {
                    name: self.name.clone(),
                    source,
                })?;
        }
        Ok(())
    }
}

/// The control plane of one agent.
#[derive(Clone)]
pub struct Clients {
    pub wallets: WalletServiceClient<Channel>,
    pub dids: DidServiceClient<Channel>,
    pub connections: ConnectionServiceClient<Channel>,
    pub issuance: IssuanceServiceClient<Channel>,
    pub holder: HolderServiceClient<Channel>,
    pub events: EventServiceClient<Channel>,
    pub verifier: VerifierServiceClient<Channel>,
    pub templates: TemplateServiceClient<Channel>,
}

impl Clients {
    /// Clients over one channel to the agent whose gRPC listens at `addr`
    /// (`host:port`); it may run in this process or another.
    pub async fn connect(addr: &str) -> Result<Clients> {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .map_err(|e| HarnessError::BadAddress(format!("{addr}: {e}")))?
            .connect()
            .await?;
        Ok(Clients {
            wallets: WalletServiceClient::new(channel.clone()),
            dids: DidServiceClient::new(channel.clone()),
            connections: ConnectionServiceClient::new(channel.clone()),
            issuance: IssuanceServiceClient::new(channel.clone()),
            holder: HolderServiceClient::new(channel.clone()),
            events: EventServiceClient::new(channel.clone()),
            verifier: VerifierServiceClient::new(channel.clone()),
            templates: TemplateServiceClient::new(channel),
        })
    }
}

/// Connects wallet `wa` of `a` (inviter) with wallet `wb` of `b` ("" is
/// the default wallet) and waits until both sides are active. Returns
/// (a's connection, b's).
pub async fn connect(
    a: &mut Clients,
    wa: &str,
    b: &mut Clients,
    wb: &str,
    within: Duration,
) -> Result<(proto::Connection, proto::Connection)> {
    let invitation = a
        .connections
        .create_invitation(proto::CreateInvitationRequest {
            wallet_id: wa.into(),
            label: "harness".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let ours = invitation.connection.unwrap_or_default();
    let theirs = b
        .connections
        .accept_invitation(proto::AcceptInvitationRequest {
            wallet_id: wb.into(),
            invitation_url: invitation.invitation_url,
            ..Default::default()
        })
        .await?
        .into_inner();
    let ours = wait_active(a, wa, &ours.id, within).await?;
    let theirs = wait_active(b, wb, &theirs.id, within).await?;
    Ok((ours, theirs))
}

/// Waits until connection `id` of `wallet` is active (the peer answered).
pub async fn wait_active(
    c: &mut Clients,
    wallet: &str,
    id: &str,
    within: Duration,
) -> Result<proto::Connection> {
    let deadline = Instant::now() + within;
    loop {
        let connection = c
            .connections
            .get_connection(proto::GetConnectionRequest {
                wallet_id: wallet.into(),
                connection_id: id.into(),
            })
            .await?
            .into_inner();
        if connection.state == proto::ConnectionState::Active as i32 {
            return Ok(connection);
        }
        if Instant::now() > deadline {
            return Err(HarnessError::Timeout(format!(
                "connection {id} not active after {within:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the record of `thid` in `wallet` reaches `state`, reading
/// the event stream (stored events first, so nothing is missed).
pub async fn wait_for_state(
    c: &mut Clients,
    wallet: &str,
    thid: &str,
    state: proto::RecordState,
    within: Duration,
) -> Result<proto::RecordEvent> {
    let mut stream = c
        .events
        .subscribe(proto::SubscribeRequest {
            wallet_id: wallet.into(),
            thid: thid.into(),
            from_start: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let wait = async {
        while let Some(e) = stream.message().await? {
            if e.new_state == state as i32 {
                return Ok(e);
            }
        }
        Err(HarnessError::Timeout(format!(
            "the event stream ended before {state:?}"
        )))
    };
    tokio::time::timeout(within, wait).await.map_err(|_| {
        HarnessError::Timeout(format!("{thid} did not reach {state:?} in {within:?}"))
    })?
}
