//! Agents as child processes of the `agentd` binary, so a test or a
//! scenario can `kill -9` one and start it again on the same ports and data.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{Clients, HarnessError, Result};

const READY_WITHIN: Duration = Duration::from_secs(30);
const STOP_WITHIN: Duration = Duration::from_secs(20);

/// An `agentd run` child process with its own temporary directory (config,
/// sled database, master key file, and `agentd.log` with its stderr). It is
/// killed when dropped, also when a test panics.
pub struct ProcessAgent {
    pub name: String,
    pub didcomm: SocketAddr,
    pub grpc: SocketAddr,
    pub endpoint: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    // Before `dir`: the process is killed before its directory is removed.
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl ProcessAgent {
    /// Starts `binary run` on loopback ports the OS picks; `env` is applied
    /// last, so `AGENTD_*` variables override the generated config.
    pub async fn start(
        binary: impl Into<PathBuf>,
        name: &str,
        env: &[(&str, &str)],
    ) -> Result<ProcessAgent> {
        let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut agent = ProcessAgent {
            name: name.to_string(),
            didcomm: unbound,
            grpc: unbound,
            endpoint: String::new(),
            binary: binary.into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            dir: tempfile::Builder::new()
                .prefix(&format!("agentd-{name}-"))
                .tempdir()?,
        };
        agent.spawn().await?;
        Ok(agent)
    }

    /// Typed gRPC clients over one channel to this agent. Make new ones
    /// after a restart: a channel does not outlive the process it reached.
    pub async fn clients(&self) -> Result<Clients> {
        Clients::connect(&self.grpc.to_string()).await
    }

    /// The process id, while the agent runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The agent's temporary directory (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The generated `agent.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    /// SIGTERM, and waits for a clean exit. A no-op when not running.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            // kill(1) rather than libc: no unsafe code for one signal.
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await?;
        }
        let status = tokio::time::timeout(STOP_WITHIN, child.wait())
            .await
            .map_err(|_| {
                HarnessError::Timeout(format!("{} still running after SIGTERM", self.name))
            })??;
        if status.success() {
            Ok(())
        } else {
            Err(self.failed(&format!("exited with {status} on SIGTERM")))
        }
    }

    /// `kill -9`, as a crash would. A no-op when not running.
    pub async fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// If the process has exited on its own (a crash point, a panic),
    /// forgets it and returns how it ended; None while it runs.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = child.try_wait()?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Sets (`Some`) or removes (`None`) an environment variable for the
    /// next start.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.to_string(), v.to_string()));
        }
    }

    /// Everything the agent has written to stderr, over all its starts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops the agent if it runs, then starts it again on the same ports
    /// and data.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.spawn().await
    }

    /// How many records the agent's database holds. sled is single-process,
    /// so this stops the agent first; [`restart`](Self::restart) starts it again.
    pub async fn record_count(&mut self) -> Result<usize> {
        self.stop().await?;
        let store = crate::store::Store::open(&self.dir.path().join("db")).map_err(|source| {
            HarnessError::Storage {
                name: self.name.clone(),
                source,
            }
        })?;
        Ok(store.record_count())
    }

    /// Writes the config for the current ports and starts the process.
    async fn spawn(&mut self) -> Result<()> {
        let dir = self.dir.path();
        // A short first backoff: deliveries resume soon after a peer
        // restarts. No tokens on loopback unless the environment asks
        // (AGENTD_GRPC_AUTH=tokens).
        let config = format!(
            "[storage]\npath = {:?}\n[keys]\nmaster_key_file = {:?}\n\
             [didcomm]\nlisten = \"{}\"\n[grpc]\nlisten = \"{}\"\nauth = \"none\"\n\
             admin_token_file = {:?}\n[outbox]\nbase_backoff_ms = 100\n",
            dir.join("db").display().to_string(),
            dir.join("master.key").display().to_string(),
            self.didcomm,
            self.grpc,
            dir.join("admin.token").display().to_string(),
        );
        std::fs::write(self.config_path(), config)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut command = Command::new(&self.binary);
        command
            .args(["run", "--config"])
            .arg(self.config_path())
            .env("RUST_LOG", "agentd=debug,info");
        // The caller's own AGENTD_* settings (ports, keys) must not leak in.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("AGENTD_") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .envs(self.env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.failed(&format!("cannot run {}: {e}", self.binary.display())))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let ready = tokio::time::timeout(READY_WITHIN, BufReader::new(stdout).lines().next_line())
            .await
            .map_err(|_| HarnessError::Timeout(format!("{} not ready", self.name)))??;
        let Some(ready) = ready else {
            let status = child.wait().await?;
            return Err(self.failed(&format!("exited with {status} before it was ready")));
        };
        let field = |key: &str| {
            ready
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .ok_or_else(|| self.failed(&format!("no {key}= in its ready line {ready:?}")))
        };
        let addr = |key: &str| {
            field(key)?
                .parse::<SocketAddr>()
                .map_err(|e| self.failed(&format!("{key}= in {ready:?}: {e}")))
        };
        let (didcomm, grpc, endpoint) = (addr("didcomm")?, addr("grpc")?, field("endpoint")?);
        (self.didcomm, self.grpc) = (didcomm, grpc);
        self.endpoint = endpoint.to_string();
        self.child = Some(child);
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("agentd.log")
    }

    /// An error naming the agent, with the end of its log: why a process
    /// failed is usually in the last lines it wrote.
    fn failed(&self, what: &str) -> HarnessError {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(5)..].join("\n");
        HarnessError::Process {
            name: self.name.clone(),
            message: format!("{what}; last log lines:\n{tail}"),
        }
    }
}
