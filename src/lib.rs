//! agentd: a DIDComm v2 peer agent daemon.
//!
//! [`Agent::start`] opens the store, binds the DIDComm HTTP listener and the
//! gRPC control plane, and starts the inbox and outbox workers;
//! [`RunningAgent::shutdown`] stops accepting, drains and flushes.
//!
//! A map, following one message:
//! - **In.** `POST /didcomm` ([`didcomm::http`]) checks limits, then
//!   [`didcomm::inbox::receive`] unpacks the envelope ([`didcomm::Envelopes`],
//!   keys from [`crypto`], DIDs from [`did`]) and takes it in: handled in
//!   the transaction that marks it seen, or stored in the inbox for the
//!   inbox worker. Either way it is flushed before the `202`.
//! - **Decided.** The transport hands it to [`protocols::Protocols`] (the
//!   one [`didcomm::Dispatch`] table), which routes by message type: trust
//!   ping, discover features, problem reports, or
//!   [`protocols::issue_credential`], whose `machine.rs` is the pure
//!   transition function and whose other files carry it out.
//! - **Stored.** Every write goes through one [`store::StoreTx`]
//!   transaction (records, indices, outbox entries, events together);
//!   [`store::Store::durable`] flushes, shared by concurrent callers.
//! - **Out.** A transition's messages sit in the outbox tree;
//!   [`didcomm::outbox`] sends them once durable, records the outcome and
//!   reports it back through [`didcomm::Dispatch`].
//! - **Seen.** What a transaction leaves to do (events to subscribers,
//!   replies to waiting calls, waking the outbox) is an [`after::After`],
//!   run only once the transaction is durable. The control plane is
//!   [`rpc`] (tonic), errors map to statuses there only.

pub mod actor;
pub mod addresses;
pub mod after;
pub mod backup;
pub mod bench;
pub mod config;
pub mod crashpoint;
pub mod crypto;
pub mod did;
pub mod didcomm;
pub mod error;
pub mod events;
pub mod fetch;
pub mod harness;
pub mod housekeeping;
pub mod metrics;
pub mod protocols;
pub mod qr;
pub mod ratelimit;
pub mod rpc;
pub mod schema;
pub mod search;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod tokens;
pub mod vc;
pub mod verify;
pub mod wallet;

mod tls;

#[cfg(test)]
mod testing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::crypto::{KeyStore, MasterKey};
use crate::didcomm::{Envelopes, Transport, Waiters};
use crate::error::{Error, Result};
use crate::protocols::Protocols;
use crate::store::Store;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn now_secs() -> u64 {
    (now_ms() / 1000) as u64
}

/// Seconds (a peer's `created_time`, `expires_time`, or a config value) as
/// milliseconds, saturating instead of overflowing.
pub fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000)
}

/// What every part needs: storage, keys, envelopes, configuration, event
/// publication, reply waiters and the workers' wake-ups. Protocol state
/// lives in [`protocols::Protocols`], transport state in
/// [`didcomm::Transport`]. Cheap to clone.
#[derive(Clone)]
pub struct Core {
    pub(crate) store: Store,
    pub(crate) keys: KeyStore,
    pub(crate) envelopes: Envelopes,
    pub(crate) config: Arc<Config>,
    /// Our public DIDComm endpoint, as written into our did:peer:2 DIDs.
    pub(crate) endpoint: String,
    pub(crate) inbox_wake: Arc<tokio::sync::Notify>,
    /// New outbox entries, handed to the outbox worker once durable.
    pub(crate) outbox: Arc<didcomm::outbox::Handoff>,
    pub(crate) waiters: Waiters,
    pub(crate) events: events::Events,
    pub(crate) metrics: metrics::Metrics,
}

pub struct Agent;

/// A started agent: its bound addresses and the handle to stop it.
pub struct RunningAgent {
    pub didcomm_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub endpoint: String,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    store: Store,
}

impl Agent {
    /// Opens storage, binds both listeners and starts serving. `master_key`
    /// is the value of AGENTD_MASTER_KEY, if set.
    pub async fn start(config: Config, master_key: Option<&str>) -> Result<RunningAgent> {
        config
            .validate()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let grpc_tls = config
            .grpc_tls()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        // Bind first: a port in use fails the start before anything is written.
        let didcomm_listener = bind(config.didcomm_listen().expect("validated")).await?;
        let grpc_listener = bind(config.grpc_listen().expect("validated")).await?;
        let metrics_listener = match &config.metrics.listen {
            Some(l) => Some(bind(l.parse().expect("validated")).await?),
            None => None,
        };
        let master = MasterKey::load(master_key, &config.keys.master_key_file)?;
        let didcomm_addr = didcomm_listener.local_addr().map_err(io)?;
        let grpc_addr = grpc_listener.local_addr().map_err(io)?;
        let endpoint = config
            .didcomm
            .public_endpoint
            .clone()
            .unwrap_or_else(|| format!("http://{didcomm_addr}/didcomm"));

        if let Some(dir) = config
            .storage
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            store::private_dir(dir, false).map_err(io)?;
        }
        let store = Store::open_with_cache(&config.storage.path, config.storage.cache_mib)?;
        let keys = KeyStore::open(master, store.clone()).map_err(|e| {
            let pending = crypto::pending_file(&config.keys.master_key_file);
            match e {
                Error::Crypto(m) if master_key.is_none() && pending.exists() => {
                    Error::Crypto(format!(
                        "{m}; an interrupted `agentd rotate-master-key` left {}: run it again to finish",
                        pending.display()
                    ))
                }
                e => e,
            }
        })?;
        let metrics = match metrics_listener {
            Some(_) => metrics::Metrics::enabled(),
            None => metrics::Metrics::default(),
        };
        if metrics_listener.is_some() {
            metrics.count_records(&store)?;
            let m = metrics.clone();
            store.on_flush(move |took| m.flushed(took));
        }
        // rustls needs one process-wide crypto provider; a second install is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let core = Core {
            envelopes: Envelopes::new(keys.clone(), store.clone(), config.didcomm.limits.clone()),
            store: store.clone(),
            keys,
            config: Arc::new(config),
            endpoint: endpoint.clone(),
            inbox_wake: Default::default(),
            outbox: Default::default(),
            waiters: Default::default(),
            events: events::Events::new(metrics.clone()),
            metrics,
        };
        if core.config.grpc.auth == "tokens" {
            tokens::bootstrap(&core, &core.config.grpc)?;
        }
        wallet::ensure_default(&core)?;
        store.durable().await?;
        let protocols = Protocols::new(&core);
        let transport = Transport::new(core.clone(), Arc::new(protocols.clone()))?;

        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(didcomm::http::serve(
            transport.clone(),
            didcomm_listener,
            shutdown.clone(),
        ));
        let verifier = verify::Verifier::new(core.clone())?;
        tasks.spawn(rpc::serve(
            core.clone(),
            protocols.clone(),
            verifier,
            grpc_listener,
            grpc_tls.map(|tls| tls.server_config()),
            shutdown.clone(),
        ));
        tasks.spawn(didcomm::inbox::run(transport.clone(), shutdown.clone()));
        tasks.spawn(didcomm::outbox::run(transport, shutdown.clone()));
        tasks.spawn(protocols.issuance.sweep(shutdown.clone()));
        tasks.spawn(housekeeping::run(core.clone(), shutdown.clone()));
        if let Some(l) = metrics_listener {
            let addr = l.local_addr().map_err(io)?;
            tracing::info!(%addr, "metrics at http://{addr}/metrics");
            tasks.spawn(metrics::serve(core.clone(), l, shutdown.clone()));
        }
        tracing::info!(%didcomm_addr, %grpc_addr, %endpoint, "agentd started");
        Ok(RunningAgent {
            didcomm_addr,
            grpc_addr,
            endpoint,
            shutdown,
            tasks,
            store,
        })
    }
}

impl RunningAgent {
    /// Stops accepting, lets in-flight requests and the workers finish their
    /// current step, then flushes sled.
    pub async fn shutdown(mut self) -> Result<()> {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.store.flush()?;
        tracing::info!("agentd stopped");
        Ok(())
    }

    /// Runs until one of the servers stops on its own (an error), then shuts down.
    pub async fn until_stopped(&mut self) {
        self.tasks.join_next().await;
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::InvalidArgument(format!("cannot listen on {addr}: {e}")))
}

fn io(e: std::io::Error) -> Error {
    Error::Internal(e.to_string())
}
