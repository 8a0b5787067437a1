//! `[verification]`: what `VerifyCredential` and the holder's status checks
//! may fetch from the network, and how long they wait and remember.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Verification {
    /// The whole of one fetch (status list, did:web document, JSON Schema):
    /// connect, answer and body. Past it the check fails, with the reason.
    pub fetch_timeout_ms: u64,
    /// Largest body read from one fetch; a larger one fails the check.
    pub max_fetch_bytes: usize,
    /// How long a fetched document is reused before it is fetched again.
    pub cache_secs: u64,
    /// Tolerated clock difference with issuers, for `nbf` and `exp`.
    pub clock_skew_secs: u64,
    /// PEM certificates trusted besides the system's roots when fetching
    /// over HTTPS (a private CA in front of did:web or status lists).
    pub ca_file: Option<PathBuf>,
}

impl Default for Verification {
    fn default() -> Self {
        Verification {
            fetch_timeout_ms: 5000,
            max_fetch_bytes: 1024 * 1024,
            cache_secs: 60,
            clock_skew_secs: 60,
            ca_file: None,
        }
    }
}

impl Verification {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.fetch_timeout_ms == 0 || self.fetch_timeout_ms > 120_000 {
            return Err(invalid(
                "verification.fetch_timeout_ms",
                "must be between 1 ms and 2 minutes",
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_fetch_bytes) {
            return Err(invalid(
                "verification.max_fetch_bytes",
                "must be between 1 KiB and 64 MiB",
            ));
        }
        if let Some(ca) = &self.ca_file
            && !ca.is_file()
        {
            return Err(invalid(
                "verification.ca_file",
                format!("{} is not a file", ca.display()),
            ));
        }
        Ok(())
    }
}
