//! Test-only helpers. Agents come from `agentd::harness`: each test starts
//! `agentd` child processes from this build with [`start`].

#![allow(dead_code)]

use std::time::{Duration, Instant};

use agentd::harness::{self, Clients, ProcessAgent};

/// How long tests wait for a connection or a record state.
pub const WAIT: Duration = Duration::from_secs(15);

/// Starts this build's `agentd` as a child process; `env` overrides config.
pub async fn start(name: &str, env: &[(&str, &str)]) -> ProcessAgent {
    ProcessAgent::start(env!("CARGO_BIN_EXE_agentd"), name, env)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Clients for `a` and `b` with their default wallets connected (`a`
/// invites), and `a`'s connection id.
pub async fn connect(a: &ProcessAgent, b: &ProcessAgent) -> (Clients, Clients, String) {
    let mut ac = a.clients().await.unwrap();
    let mut bc = b.clients().await.unwrap();
    let (connection, _) = harness::connect(&mut ac, "", &mut bc, "", WAIT)
        .await
        .unwrap();
    (ac, bc, connection.id)
}

/// A raw channel to `a`'s gRPC, for clients [`agentd::harness::Clients`]
/// does not hold (reflection, health, an API-key interceptor).
pub async fn channel(a: &ProcessAgent) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{}", a.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Polls `f` until it returns Some, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
