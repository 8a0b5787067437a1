//! Starts real `agentd` processes on loopback for integration tests: each
//! gets its own temporary directory, config and OS-chosen ports, and is
//! killed when dropped (also when a test panics).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use agentd::harness::{self, Clients};
use agentd::rpc::proto::connection_service_client::ConnectionServiceClient;
use agentd::rpc::proto::did_service_client::DidServiceClient;
use agentd::rpc::proto::event_service_client::EventServiceClient;
use agentd::rpc::proto::holder_service_client::HolderServiceClient;
use agentd::rpc::proto::issuance_service_client::IssuanceServiceClient;
use agentd::rpc::proto::wallet_service_client::WalletServiceClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

pub const MASTER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

pub struct Daemon {
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    child: Option<Child>,
    pub didcomm: String,
    pub grpc: String,
    pub endpoint: String,
}

impl Daemon {
    /// Starts a daemon in a new temporary directory.
    pub async fn start() -> Daemon {
        Self::start_with_env(&[]).await
    }

    /// Starts a daemon with extra environment variables (config overrides).
    pub async fn start_with_env(env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_in(dir, "127.0.0.1:0", "127.0.0.1:0", env).await
    }

    /// How many records the daemon's database holds, read with the daemon
    /// stopped (sled is single-process); the daemon is started again after.
    pub async fn record_count(self) -> (Daemon, usize) {
        let mut me = self;
        me.stop().await;
        let count = agentd::store::Store::open(&me.dir.path().join("db"))
            .unwrap()
            .record_count();
        (me.start_again().await, count)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    async fn start_in(
        dir: tempfile::TempDir,
        didcomm: &str,
        grpc: &str,
        env: Vec<(String, String)>,
    ) -> Daemon {
        let config = dir.path().join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "[storage]\npath = {:?}\n[didcomm]\nlisten = {didcomm:?}\n[grpc]\nlisten = {grpc:?}\n[outbox]\nbase_backoff_ms = 100\n",
                dir.path().join("db").display().to_string()
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_agentd"))
            .args(["run", "--config"])
            .arg(&config)
            .env("AGENTD_MASTER_KEY", MASTER_KEY)
            .env("RUST_LOG", "agentd=debug,info")
            .envs(env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("agentd starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("agentd ready in time")
            .unwrap()
            .expect("agentd printed its ready line");
        let field = |name: &str| {
            ready
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} in {ready:?}"))
                .to_string()
        };
        Daemon {
            env,
            didcomm: field("didcomm"),
            grpc: field("grpc"),
            endpoint: field("endpoint"),
            dir,
            child: Some(child),
        }
    }

    /// SIGTERM, and wait for a clean exit.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().expect("running") as i32;
            // SAFETY-free: kill(1) via the command line keeps the test free of libc.
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap();
            let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
                .await
                .expect("agentd stops on SIGTERM")
                .unwrap();
            assert!(status.success(), "agentd exited with {status}");
        }
    }

    /// `kill -9`, then starts again on the same ports and data.
    pub async fn crash_and_restart(mut self) -> Daemon {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL");
            child.wait().await.expect("reaped");
        }
        self.start_again().await
    }

    /// Stops and starts again on the same ports and data.
    pub async fn restart(self) -> Daemon {
        let mut me = self;
        me.stop().await;
        me.start_again().await
    }

    async fn start_again(self) -> Daemon {
        let (didcomm, grpc) = (self.didcomm.clone(), self.grpc.clone());
        Self::start_in(self.dir, &didcomm, &grpc, self.env).await
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .expect("gRPC connects")
    }

    pub async fn connections(&self) -> ConnectionServiceClient<Channel> {
        ConnectionServiceClient::new(self.channel().await)
    }

    pub async fn dids(&self) -> DidServiceClient<Channel> {
        DidServiceClient::new(self.channel().await)
    }

    pub async fn wallets(&self) -> WalletServiceClient<Channel> {
        WalletServiceClient::new(self.channel().await)
    }

    pub async fn issuance(&self) -> IssuanceServiceClient<Channel> {
        IssuanceServiceClient::new(self.channel().await)
    }

    pub async fn holder(&self) -> HolderServiceClient<Channel> {
        HolderServiceClient::new(self.channel().await)
    }

    pub async fn events(&self) -> EventServiceClient<Channel> {
        EventServiceClient::new(self.channel().await)
    }
}

/// Connects wallet `wa` of `a` (inviter) with wallet `wb` of `b` and waits
/// until both sides are active. Returns (a's connection id, b's).
pub async fn connect(a: &Daemon, wa: &str, b: &Daemon, wb: &str) -> (String, String) {
    let mut ca = Clients::connect(&a.grpc).await.unwrap();
    let mut cb = Clients::connect(&b.grpc).await.unwrap();
    let (x, y) = harness::connect(&mut ca, wa, &mut cb, wb, Duration::from_secs(15))
        .await
        .unwrap();
    (x.id, y.id)
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
