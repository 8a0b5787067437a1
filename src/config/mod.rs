//! agent.toml, with `AGENTD_*` environment overrides, validated before
//! anything is opened or written.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::tls::ServerTls;

mod env;
mod verification;
pub use env::ENV_OVERRIDES;
pub use verification::Verification;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

pub(crate) fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub storage: Storage,
    pub didcomm: DidComm,
    pub grpc: Grpc,
    pub keys: Keys,
    pub log: Log,
    pub outbox: Outbox,
    pub issuance: Issuance,
    pub status: Status,
    pub verification: Verification,
    pub metrics: Metrics,
    pub traces: Traces,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Address of the Prometheus listener (`GET /metrics`); unset: none.
    /// It answers anyone who reaches it: keep it on loopback or a
    /// monitoring network.
    pub listen: Option<String>,
}

/// OpenTelemetry trace export (see `crate::telemetry`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Traces {
    /// The OTLP/gRPC collector, `http(s)://host:port`; unset: no spans are
    /// exported (and none are built for export).
    pub otlp_endpoint: Option<String>,
    /// `service.name` on every exported span: what tells one agent's spans
    /// from another's in the trace backend.
    pub service_name: String,
}

impl Default for Traces {
    fn default() -> Self {
        Traces {
            otlp_endpoint: None,
            service_name: "agentd".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// The sled database directory.
    pub path: PathBuf,
    /// How much memory sled may keep of the database, in MiB: reads past
    /// it go to disk, so a large store wants its index and hot records in.
    pub cache_mib: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DidComm {
    /// Address of the DIDComm HTTP listener (`POST /didcomm`).
    pub listen: String,
    /// The URL peers reach us at; put in our did:peer:2 services. Default:
    /// `http://<bound listen address>/didcomm`.
    pub public_endpoint: Option<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Messages per second accepted from one remote address (token bucket;
    /// 0 turns the limit off). Past it: 429, nothing stored.
    pub rate_limit_per_sec: u32,
    /// How many messages one address may send at once before the rate applies.
    pub rate_limit_burst: u32,
    /// Most messages waiting in the inbox; past it: 429, nothing stored.
    pub max_inbox: usize,
    /// Handle a message in the request that takes it in when nothing older
    /// waits (one transaction and flush per message); false stores every
    /// message for the inbox worker first.
    pub handle_inline: bool,
    /// What one request may cost before it is refused (`[didcomm.limits]`).
    pub limits: Limits,
}

/// Bounds on what `POST /didcomm` reads and keeps: every size and count is
/// checked before the part it bounds is decoded, resolved or decrypted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Recipients in one JWE.
    pub max_recipients: usize,
    /// A DID or key id (DID URL) in an envelope: recipients, sender, signer.
    pub max_did_bytes: usize,
    /// A message's id, thid, pthid and type.
    pub max_id_bytes: usize,
    /// Attachments in one message.
    pub max_attachments: usize,
    /// Messages whose `created_time` is older than this are refused, and
    /// the replay guard keeps a message id this long (48 h by default: at
    /// least a peer's retry budget).
    pub replay_window_secs: u64,
    /// How far in the future a `created_time` may be.
    pub clock_skew_secs: u64,
    /// Envelopes decrypted at once (off the async workers), from peers and
    /// from strangers answering an open invitation; more wait.
    pub max_concurrent_unpacks: usize,
    pub max_concurrent_stranger_unpacks: usize,
    /// Requests from one address being processed at once; past it, 429.
    pub max_in_flight_per_address: usize,
    /// Request headers: how many and how large, and how long a client may
    /// take to send them.
    pub max_header_count: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_recipients: 16,
            max_did_bytes: 4096,
            max_id_bytes: 256,
            max_attachments: 32,
            replay_window_secs: 48 * 3600,
            clock_skew_secs: 300,
            max_concurrent_unpacks: 8,
            max_concurrent_stranger_unpacks: 2,
            max_in_flight_per_address: 64,
            max_header_count: 64,
            max_header_bytes: 16 * 1024,
            header_read_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grpc {
    pub listen: String,
    /// "tokens": every call carries `authorization: Bearer <token>` and acts
    /// with that token's wallet and role. "none": no check, every caller is
    /// an admin (local development on loopback only).
    pub auth: String,
    /// A bootstrap admin token to register at start (AGENTD_ADMIN_TOKEN;
    /// keep it out of the file).
    pub admin_token: Option<String>,
    /// Where the first admin token is written (0600) when none is given.
    pub admin_token_file: PathBuf,
    /// Require a token for gRPC reflection too (health stays open).
    pub reflection_requires_token: bool,
    /// Deprecated: an admin token by another name (AGENTD_API_KEY).
    pub api_key: Option<String>,
    /// Each token's rate, in calls' worth per second (a read costs 1, an
    /// action 5; see `rpc::auth::TABLE`), unless the token has its own; 0: none.
    pub rate_per_sec: u32,
    /// How much a token may spend at once.
    pub rate_burst: u32,
    /// Serve the control plane over TLS (`[grpc.tls]`); plaintext when unset.
    pub tls: GrpcTls,
    /// Allow plaintext on an address that is not loopback, for a gateway
    /// in front that terminates TLS (see `check_grpc_exposure`).
    pub insecure: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcTls {
    /// PEM: the server's certificate chain (leaf first) and its private
    /// key. Both or neither.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// PEM: when set, clients must present a certificate this CA signed (mTLS).
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Keys {
    /// Used when AGENTD_MASTER_KEY is not set; created (0600) on first start.
    pub master_key_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// "text" or "json". The level comes from RUST_LOG (default "info").
    pub format: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Outbox {
    /// How long after it was queued a message is still retried; a peer
    /// down for less than this gets everything when it is back.
    pub retry_budget_secs: u64,
    /// Also give up after this many retries (0: only the time budget counts).
    pub max_retries: u32,
    /// First retry delay; doubles each attempt (with jitter) up to `max_backoff_ms`.
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Per-request HTTP timeout, and the part of it a connection may take.
    pub send_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Sends in flight to one destination at a time, so that one slow or
    /// dead endpoint cannot hold up deliveries to others.
    pub per_destination: usize,
    /// Whether peers' endpoints may be loopback, private or link-local
    /// addresses. Unset: allowed only when `didcomm.listen` is loopback
    /// itself (a local test setup); a daemon facing the internet must not
    /// post where a stranger's DID points inside its network.
    pub allow_private_destinations: Option<bool>,
    /// Messages given up on are kept this long, and at most this many.
    pub dead_letter_retention_secs: u64,
    pub max_dead_letters: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Issuance {
    /// An unfinished issue-credential thread with no progress for this long
    /// is Abandoned.
    pub thread_timeout_secs: u64,
    /// How often expired and idle records are looked for.
    pub sweep_interval_ms: u64,
    /// How many record events are kept for subscribers that reconnect.
    pub event_retention: usize,
    /// Unfinished records one connection may have; past it, a peer's offer
    /// is refused with a problem report.
    pub max_open_records_per_connection: u64,
    /// The claims of one offer, as JSON.
    pub max_claims_bytes: usize,
    /// Ask for an ack of each credential we issue (`please_ack`). Identus
    /// (didcomm-jvm) cannot read the DIDComm v2.1 array form and refuses
    /// the whole message: turn it off toward Identus holders.
    pub please_ack: bool,
}

/// The Bitstring Status Lists we publish (see `crate::status`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Status {
    /// A changed list is signed again at most this often: a burst of
    /// revocations makes one new list, and readers cache it this long.
    pub resign_interval_ms: u64,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            resign_interval_ms: 1000,
        }
    }
}

impl Default for Issuance {
    fn default() -> Self {
        Issuance {
            thread_timeout_secs: 7 * 24 * 3600,
            sweep_interval_ms: 1000,
            event_retention: 100_000,
            max_open_records_per_connection: 1000,
            max_claims_bytes: 64 * 1024,
            please_ack: true,
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            path: PathBuf::from("data/agentd.sled"),
            cache_mib: crate::store::DEFAULT_CACHE_MIB,
        }
    }
}

impl Default for DidComm {
    fn default() -> Self {
        DidComm {
            listen: "127.0.0.1:8080".into(),
            public_endpoint: None,
            max_body_bytes: 1024 * 1024,
            rate_limit_per_sec: 5000,
            rate_limit_burst: 10_000,
            max_inbox: 100_000,
            handle_inline: true,
            limits: Limits::default(),
        }
    }
}

impl Default for Grpc {
    fn default() -> Self {
        Grpc {
            listen: "127.0.0.1:50051".into(),
            auth: "tokens".into(),
            admin_token: None,
            admin_token_file: "data/admin.token".into(),
            reflection_requires_token: false,
            api_key: None,
            rate_per_sec: 200,
            rate_burst: 400,
            tls: GrpcTls::default(),
            insecure: false,
        }
    }
}

impl Default for Keys {
    fn default() -> Self {
        Keys {
            master_key_file: PathBuf::from("data/master.key"),
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: "text".into(),
        }
    }
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            retry_budget_secs: 24 * 3600,
            max_retries: 0,
            base_backoff_ms: 500,
            max_backoff_ms: 60_000,
            send_timeout_ms: 10_000,
            connect_timeout_ms: 3_000,
            per_destination: 32,
            allow_private_destinations: None,
            dead_letter_retention_secs: 7 * 24 * 3600,
            max_dead_letters: 10_000,
        }
    }
}

impl Config {
    /// Reads `path`, applies the environment, validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.didcomm_listen()?;
        self.grpc_tls()?;
        self.check_grpc_exposure()?;
        self.verification.validate()?;
        if let Some(l) = &self.metrics.listen {
            l.parse::<std::net::SocketAddr>()
                .map_err(|e| invalid("metrics.listen", format!("{l:?}: {e}")))?;
        }
        if let Some(url) = &self.traces.otlp_endpoint {
            let parsed = url::Url::parse(url)
                .map_err(|e| invalid("traces.otlp_endpoint", format!("{url:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(invalid(
                    "traces.otlp_endpoint",
                    format!("{url:?} is not an http(s)://host:port URL"),
                ));
            }
        }
        if self.traces.service_name.is_empty() {
            return Err(invalid("traces.service_name", "must not be empty"));
        }
        if let Some(url) = &self.didcomm.public_endpoint {
            let parsed = url::Url::parse(url)
                .map_err(|e| invalid("didcomm.public_endpoint", format!("{url:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid("didcomm.public_endpoint", "must be an http(s) URL"));
            }
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.didcomm.max_body_bytes) {
            return Err(invalid(
                "didcomm.max_body_bytes",
                "must be between 1 KiB and 64 MiB",
            ));
        }
        if self.didcomm.rate_limit_per_sec > 0 && self.didcomm.rate_limit_burst == 0 {
            return Err(invalid(
                "didcomm.rate_limit_burst",
                "must be positive when a rate limit is set",
            ));
        }
        if self.didcomm.max_inbox == 0 {
            return Err(invalid("didcomm.max_inbox", "must be positive"));
        }
        if self.storage.path.as_os_str().is_empty() {
            return Err(invalid("storage.path", "must not be empty"));
        }
        if self.storage.cache_mib < 16 {
            return Err(invalid("storage.cache_mib", "must be at least 16"));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid("log.format", "must be \"text\" or \"json\""));
        }
        if self.grpc.api_key.as_deref().is_some_and(|k| k.len() < 16) {
            return Err(invalid("grpc.api_key", "must be at least 16 characters"));
        }
        if self
            .grpc
            .admin_token
            .as_deref()
            .is_some_and(|k| k.len() < 32)
        {
            return Err(invalid(
                "grpc.admin_token",
                "must be at least 32 characters",
            ));
        }
        if !matches!(self.grpc.auth.as_str(), "tokens" | "none") {
            return Err(invalid("grpc.auth", "must be \"tokens\" or \"none\""));
        }
        let o = &self.outbox;
        if o.retry_budget_secs == 0 || o.retry_budget_secs > 30 * 24 * 3600 {
            return Err(invalid(
                "outbox.retry_budget_secs",
                "must be between 1 s and 30 days",
            ));
        }
        if o.base_backoff_ms == 0 || o.max_backoff_ms < o.base_backoff_ms {
            return Err(invalid(
                "outbox.max_backoff_ms",
                "backoffs must be positive, the maximum at least base_backoff_ms",
            ));
        }
        if o.send_timeout_ms == 0 || o.connect_timeout_ms == 0 || o.per_destination == 0 {
            return Err(invalid(
                "outbox",
                "timeouts and per_destination must be positive",
            ));
        }
        let l = &self.didcomm.limits;
        if [
            l.max_recipients,
            l.max_did_bytes,
            l.max_id_bytes,
            l.max_concurrent_unpacks,
            l.max_concurrent_stranger_unpacks,
            l.max_in_flight_per_address,
            l.max_header_count,
            l.max_header_bytes,
        ]
        .contains(&0)
            || l.replay_window_secs == 0
            || l.header_read_timeout_ms == 0
        {
            return Err(invalid(
                "didcomm.limits",
                "every limit must be positive (max_attachments and clock_skew_secs may be 0)",
            ));
        }
        if l.max_did_bytes > crate::did::MAX_DID_BYTES {
            return Err(invalid(
                "didcomm.limits.max_did_bytes",
                format!("must be at most {}", crate::did::MAX_DID_BYTES),
            ));
        }
        if self.issuance.max_open_records_per_connection == 0 || self.issuance.max_claims_bytes == 0
        {
            return Err(invalid(
                "issuance",
                "max_open_records_per_connection and max_claims_bytes must be positive",
            ));
        }
        if self.issuance.thread_timeout_secs == 0 || self.issuance.sweep_interval_ms == 0 {
            return Err(invalid(
                "issuance",
                "thread_timeout_secs and sweep_interval_ms must be positive",
            ));
        }
        Ok(())
    }

    /// Whether the outbox may post to loopback and private addresses.
    pub fn private_destinations_allowed(&self) -> bool {
        self.outbox
            .allow_private_destinations
            .unwrap_or_else(|| self.didcomm_listen().is_ok_and(|a| a.ip().is_loopback()))
    }

    pub fn didcomm_listen(&self) -> Result<SocketAddr, ConfigError> {
        self.didcomm.listen.parse().map_err(|_| {
            invalid(
                "didcomm.listen",
                format!("{:?} is not host:port", self.didcomm.listen),
            )
        })
    }

    pub fn grpc_listen(&self) -> Result<SocketAddr, ConfigError> {
        self.grpc.listen.parse().map_err(|_| {
            invalid(
                "grpc.listen",
                format!("{:?} is not host:port", self.grpc.listen),
            )
        })
    }

    /// The control plane's TLS material, read and checked; None for plaintext.
    pub(crate) fn grpc_tls(&self) -> Result<Option<ServerTls>, ConfigError> {
        let tls = &self.grpc.tls;
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                ServerTls::load(cert, key, tls.client_ca_file.as_deref()).map(Some)
            }
            (None, None) if tls.client_ca_file.is_some() => Err(invalid(
                "grpc.tls.client_ca_file",
                "client certificates need TLS: set grpc.tls.cert_file and grpc.tls.key_file too",
            )),
            (None, None) => Ok(None),
            (Some(_), None) => Err(invalid(
                "grpc.tls.key_file",
                "must be set with grpc.tls.cert_file",
            )),
            (None, Some(_)) => Err(invalid(
                "grpc.tls.cert_file",
                "must be set with grpc.tls.key_file",
            )),
        }
    }

    /// Whoever reaches the control plane can act on every wallet, and over
    /// plaintext anyone on the path reads the API key: off loopback it must
    /// be TLS, unless `grpc.insecure` says a gateway in front provides it.
    fn check_grpc_exposure(&self) -> Result<(), ConfigError> {
        let listen = self.grpc_listen()?;
        let tls = self.grpc.tls.cert_file.is_some();
        let tokens = self.grpc.auth == "tokens";
        if listen.ip().is_loopback() || self.grpc.insecure || (tls && tokens) {
            return Ok(());
        }
        let (exposed, fix) = if !tls {
            ("plaintext", "set grpc.tls.cert_file and grpc.tls.key_file")
        } else {
            (
                "open to anyone (grpc.auth = \"none\")",
                "set grpc.auth = \"tokens\"",
            )
        };
        Err(invalid(
            "grpc.listen",
            format!(
                "{listen} is not a loopback address and the control plane would be {exposed}: \
                 {fix}, or grpc.insecure = true if a gateway in front of agentd terminates TLS \
                 and checks callers"
            ),
        ))
    }
}

#[cfg(test)]
mod tests;
