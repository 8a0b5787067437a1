//! `AGENTD_*` environment variables: each overrides one config key.

use super::{Config, ConfigError, invalid};

/// Environment variables that override config keys, in the order applied.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("AGENTD_STORAGE_PATH", "storage.path"),
    ("AGENTD_STORAGE_CACHE_MIB", "storage.cache_mib"),
    ("AGENTD_DIDCOMM_LISTEN", "didcomm.listen"),
    ("AGENTD_DIDCOMM_PUBLIC_ENDPOINT", "didcomm.public_endpoint"),
    ("AGENTD_DIDCOMM_MAX_BODY_BYTES", "didcomm.max_body_bytes"),
    (
        "AGENTD_DIDCOMM_RATE_LIMIT_PER_SEC",
        "didcomm.rate_limit_per_sec",
    ),
    (
        "AGENTD_DIDCOMM_RATE_LIMIT_BURST",
        "didcomm.rate_limit_burst",
    ),
    ("AGENTD_DIDCOMM_MAX_INBOX", "didcomm.max_inbox"),
    ("AGENTD_DIDCOMM_HANDLE_INLINE", "didcomm.handle_inline"),
    (
        "AGENTD_OUTBOX_ALLOW_PRIVATE_DESTINATIONS",
        "outbox.allow_private_destinations",
    ),
    ("AGENTD_GRPC_LISTEN", "grpc.listen"),
    ("AGENTD_API_KEY", "grpc.api_key"),
    ("AGENTD_ADMIN_TOKEN", "grpc.admin_token"),
    ("AGENTD_ADMIN_TOKEN_FILE", "grpc.admin_token_file"),
    ("AGENTD_GRPC_AUTH", "grpc.auth"),
    ("AGENTD_GRPC_TLS_CERT_FILE", "grpc.tls.cert_file"),
    ("AGENTD_GRPC_TLS_KEY_FILE", "grpc.tls.key_file"),
    ("AGENTD_GRPC_TLS_CLIENT_CA_FILE", "grpc.tls.client_ca_file"),
    ("AGENTD_GRPC_INSECURE", "grpc.insecure"),
    ("AGENTD_MASTER_KEY_FILE", "keys.master_key_file"),
    ("AGENTD_LOG_FORMAT", "log.format"),
    ("AGENTD_METRICS_LISTEN", "metrics.listen"),
    ("AGENTD_TRACES_OTLP_ENDPOINT", "traces.otlp_endpoint"),
    ("AGENTD_TRACES_SERVICE_NAME", "traces.service_name"),
    (
        "AGENTD_OUTBOX_RETRY_BUDGET_SECS",
        "outbox.retry_budget_secs",
    ),
    ("AGENTD_OUTBOX_MAX_RETRIES", "outbox.max_retries"),
    ("AGENTD_OUTBOX_BASE_BACKOFF_MS", "outbox.base_backoff_ms"),
    ("AGENTD_OUTBOX_MAX_BACKOFF_MS", "outbox.max_backoff_ms"),
    (
        "AGENTD_ISSUANCE_THREAD_TIMEOUT_SECS",
        "issuance.thread_timeout_secs",
    ),
    (
        "AGENTD_ISSUANCE_SWEEP_INTERVAL_MS",
        "issuance.sweep_interval_ms",
    ),
    (
        "AGENTD_ISSUANCE_MAX_OPEN_RECORDS_PER_CONNECTION",
        "issuance.max_open_records_per_connection",
    ),
    (
        "AGENTD_STATUS_RESIGN_INTERVAL_MS",
        "status.resign_interval_ms",
    ),
    (
        "AGENTD_VERIFICATION_FETCH_TIMEOUT_MS",
        "verification.fetch_timeout_ms",
    ),
    ("AGENTD_VERIFICATION_CA_FILE", "verification.ca_file"),
    ("AGENTD_VERIFICATION_CACHE_SECS", "verification.cache_secs"),
    (
        "AGENTD_VERIFICATION_CLOCK_SKEW_SECS",
        "verification.clock_skew_secs",
    ),
];

impl Config {
    /// Applies `AGENTD_*` overrides; `get` reads one variable.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for (var, key) in ENV_OVERRIDES {
            let Some(v) = get(var) else { continue };
            let number = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| invalid(key, format!("{var}={v:?} is not a number")))
            };
            let boolean = |v: &str| {
                v.parse::<bool>()
                    .map_err(|_| invalid(key, format!("{var}={v:?} is not true or false")))
            };
            match *key {
                "storage.path" => self.storage.path = v.into(),
                "storage.cache_mib" => self.storage.cache_mib = number(&v)?,
                "didcomm.listen" => self.didcomm.listen = v,
                "didcomm.public_endpoint" => self.didcomm.public_endpoint = Some(v),
                "didcomm.max_body_bytes" => self.didcomm.max_body_bytes = number(&v)? as usize,
                "didcomm.rate_limit_per_sec" => {
                    self.didcomm.rate_limit_per_sec = number(&v)? as u32
                }
                "didcomm.rate_limit_burst" => self.didcomm.rate_limit_burst = number(&v)? as u32,
                "didcomm.max_inbox" => self.didcomm.max_inbox = number(&v)? as usize,
                "didcomm.handle_inline" => self.didcomm.handle_inline = boolean(&v)?,
                "outbox.allow_private_destinations" => {
                    self.outbox.allow_private_destinations = Some(boolean(&v)?)
                }
                "grpc.listen" => self.grpc.listen = v,
                "grpc.api_key" => self.grpc.api_key = Some(v),
                "grpc.admin_token" => self.grpc.admin_token = Some(v),
                "grpc.admin_token_file" => self.grpc.admin_token_file = v.into(),
                "grpc.auth" => self.grpc.auth = v,
                "grpc.tls.cert_file" => self.grpc.tls.cert_file = Some(v.into()),
                "grpc.tls.key_file" => self.grpc.tls.key_file = Some(v.into()),
                "grpc.tls.client_ca_file" => self.grpc.tls.client_ca_file = Some(v.into()),
                "grpc.insecure" => self.grpc.insecure = boolean(&v)?,
                "keys.master_key_file" => self.keys.master_key_file = v.into(),
                "log.format" => self.log.format = v,
                "metrics.listen" => self.metrics.listen = Some(v),
                "traces.otlp_endpoint" => self.traces.otlp_endpoint = Some(v),
                "traces.service_name" => self.traces.service_name = v,
                "outbox.retry_budget_secs" => self.outbox.retry_budget_secs = number(&v)?,
                "outbox.max_retries" => self.outbox.max_retries = number(&v)? as u32,
                "outbox.base_backoff_ms" => self.outbox.base_backoff_ms = number(&v)?,
                "outbox.max_backoff_ms" => self.outbox.max_backoff_ms = number(&v)?,
                "issuance.thread_timeout_secs" => self.issuance.thread_timeout_secs = number(&v)?,
                "issuance.sweep_interval_ms" => self.issuance.sweep_interval_ms = number(&v)?,
                "issuance.max_open_records_per_connection" => {
                    self.issuance.max_open_records_per_connection = number(&v)?
                }
                "status.resign_interval_ms" => self.status.resign_interval_ms = number(&v)?,
                "verification.fetch_timeout_ms" => self.verification.fetch_timeout_ms = number(&v)?,
                "verification.ca_file" => self.verification.ca_file = Some(v.into()),
                "verification.cache_secs" => self.verification.cache_secs = number(&v)?,
                "verification.clock_skew_secs" => self.verification.clock_skew_secs = number(&v)?,
                _ => unreachable!("every override has a key"),
            }
        }
        Ok(())
    }
}
