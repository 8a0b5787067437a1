//! Bounded HTTP GETs of documents a credential names (status lists, did:web
//! documents, JSON Schemas). The URL comes from whoever wrote the
//! credential, so each fetch is capped in time and size, refused toward
//! private addresses (see [`crate::addresses`]), never follows a redirect
//! to somewhere else unchecked, and what came back is reused for
//! `verification.cache_secs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Verification;
use crate::error::{Error, Result};

/// Why a document could not be fetched. Verification reports it as a
/// failed check, so it says what went wrong in words a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{0} is not an http(s) URL")]
    BadUrl(String),
    #[error("fetching {url} timed out after {ms} ms")]
    Timeout { url: String, ms: u64 },
    #[error("fetching {url} failed: {why}")]
    Failed { url: String, why: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} sent more than {max} bytes")]
    TooLarge { url: String, max: usize },
}

/// How much of a URL an error repeats.
const SHOWN: usize = 200;

/// All cached bodies together stay under this; past it the cache starts over.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

pub struct Fetcher {
    http: reqwest::Client,
    timeout_ms: u64,
    max_bytes: usize,
    ttl: Duration,
    private_allowed: bool,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    /// Each body and when it goes stale.
    bodies: HashMap<String, (Instant, Arc<[u8]>)>,
    bytes: usize,
}

impl Fetcher {
    /// A fetcher by `[verification]`; `private_allowed` lets it reach
    /// loopback and private addresses (a daemon on loopback, tests).
    pub fn new(config: &Verification, private_allowed: bool) -> Result<Self> {
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.fetch_timeout_ms))
            // Each hop is resolved through the same resolver, so a redirect
            // cannot lead to a private address either; a few are enough.
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("agentd/", env!("CARGO_PKG_VERSION")));
        if !private_allowed {
            http = http.dns_resolver(Arc::new(crate::addresses::PublicOnly));
        }
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| Error::Internal(format!("reading {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
            http = http.tls_certs_merge(certs);
        }
        Ok(Fetcher {
            http: http
                .build()
                .map_err(|e| Error::Internal(format!("HTTP client: {e}")))?,
            timeout_ms: config.fetch_timeout_ms,
            max_bytes: config.max_fetch_bytes,
            ttl: Duration::from_secs(config.cache_secs),
            private_allowed,
            cache: Mutex::default(),
        })
    }

    /// The body at `url`, from the cache while it is fresh: for
    /// `verification.cache_secs`, or less if the answer's `Cache-Control`
    /// says so.
    pub async fn get(&self, url: &str) -> std::result::Result<Arc<[u8]>, FetchError> {
        let shown = || crate::error::clip(url, SHOWN);
        let parsed = url::Url::parse(url).map_err(|_| FetchError::BadUrl(shown()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(FetchError::BadUrl(shown()));
        }
        if let Some((until, body)) = self.cache().bodies.get(url)
            && Instant::now() < *until
        {
            return Ok(body.clone());
        }
        let (body, ttl) = self.fetch(parsed).await?;
        let body: Arc<[u8]> = body.into();
        let ttl = ttl.map_or(self.ttl, |t| t.min(self.ttl));
        if ttl.is_zero() {
            return Ok(body);
        }
        let mut cache = self.cache();
        if cache.bytes + body.len() > CACHE_BYTES {
            *cache = Cache::default();
        }
        cache.bytes += body.len();
        if let Some((_, old)) = cache
            .bodies
            .insert(url.to_string(), (Instant::now() + ttl, body.clone()))
        {
            cache.bytes -= old.len();
        }
        Ok(body)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The body, and how long its publisher lets it be reused, if it says.
    async fn fetch(
        &self,
        url: url::Url,
    ) -> std::result::Result<(Vec<u8>, Option<Duration>), FetchError> {
        let shown = crate::error::clip(url.as_str(), SHOWN);
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                FetchError::Timeout {
                    url: shown.clone(),
                    ms: self.timeout_ms,
                }
            } else {
                FetchError::Failed {
                    url: shown.clone(),
                    why: crate::error::clip(&error_chain(&e), SHOWN),
                }
            }
        };
        // Literal addresses in the URL skip the resolver, so they are checked here.
        if !self.private_allowed
            && let Err(why) = crate::addresses::check_literal(url.as_str())
        {
            return Err(FetchError::Failed {
                url: shown.clone(),
                why,
            });
        }
        let mut response = self.http.get(url).send().await.map_err(failed)?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url: shown,
                status: response.status().as_u16(),
            });
        }
        let too_large = || FetchError::TooLarge {
            url: shown.clone(),
            max: self.max_bytes,
        };
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(too_large());
        }
        let ttl = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(max_age);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, ttl.flatten()))
    }
}

/// How long a `Cache-Control` lets a body be reused: its `max-age`, zero
/// for `no-store` or `no-cache`, None when it says neither.
fn max_age(cache_control: &str) -> Option<Duration> {
    let mut age = None;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            age = n.trim_matches('"').parse().ok().map(Duration::from_secs);
        }
    }
    age
}

/// An error with its causes: reqwest's own text alone says only
/// "error sending request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_caps_reuse() {
        assert_eq!(max_age("public, max-age=1"), Some(Duration::from_secs(1)));
        assert_eq!(max_age("max-age=0"), Some(Duration::ZERO));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("private, No-Cache"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }
}
