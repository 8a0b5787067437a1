//! Verifying credentials from anyone: a VC-JWT, or a VP-JWT wrapping
//! VC-JWTs, with one result per check — Dentity's five
//! (`SignatureVerification`, `IssuerIsSigner`, `CredentialStatus`,
//! `SchemaConformance`, `TrustRegistryMembership`) plus `ValidityPeriod`.
//! Each check passes or fails on its own; only a JWT that cannot be decoded
//! at all is an error. Issuer DIDs are resolved offline (did:key,
//! did:peer) or fetched (did:web); status lists and schemas are fetched
//! through [`crate::fetch`], except our own lists, whose committed bits are
//! read from the store. [`held`] re-checks the status of held credentials.

pub mod held;
mod schema;
mod status;

use std::sync::Arc;

use serde_json::Value;

use crate::Core;
use crate::did::{self, ResolvedDid};
use crate::error::{Error, Result};
use crate::fetch::Fetcher;
use crate::vc::{self, Jws};

pub const SIGNATURE: &str = "SignatureVerification";
pub const ISSUER_IS_SIGNER: &str = "IssuerIsSigner";
pub const VALIDITY: &str = "ValidityPeriod";
pub const STATUS: &str = "CredentialStatus";
pub const SCHEMA: &str = "SchemaConformance";
pub const TRUST: &str = "TrustRegistryMembership";

/// Credentials one presentation may carry.
const MAX_CREDENTIALS: usize = 100;
/// How much of a value taken from the JWT a message repeats.
const SHOWN: usize = 200;

/// One check's outcome. One that does not apply is valid and says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub valid: bool,
    pub applicable: bool,
    pub messages: Vec<String>,
}

impl Check {
    fn pass(name: &'static str) -> Self {
        Check {
            name,
            valid: true,
            applicable: true,
            messages: vec![],
        }
    }

    fn fail(name: &'static str, message: impl Into<String>) -> Self {
        Check {
            name,
            valid: false,
            applicable: true,
            messages: vec![message.into()],
        }
    }

    fn not_applicable(name: &'static str, why: impl Into<String>) -> Self {
        Check {
            name,
            valid: true,
            applicable: false,
            messages: vec![why.into()],
        }
    }

    /// Passes, or fails with the error's words.
    fn of(name: &'static str, outcome: std::result::Result<(), String>) -> Self {
        match outcome {
            Ok(()) => Check::pass(name),
            Err(why) => Check::fail(name, why),
        }
    }
}

/// What one credential claims, and its checks.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialReport {
    pub id: String,
    pub issuer: String,
    pub subject: String,
    pub types: Vec<String>,
    pub checks: Vec<Check>,
}

impl CredentialReport {
    pub fn valid(&self) -> bool {
        self.checks.iter().all(|c| c.valid)
    }
}

/// The outcome of verifying a VC-JWT (no presentation checks, no holder)
/// or a VP-JWT.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub presentation: Vec<Check>,
    pub holder: Option<String>,
    pub credentials: Vec<CredentialReport>,
}

impl Report {
    pub fn valid(&self) -> bool {
        self.presentation.iter().all(|c| c.valid) && self.credentials.iter().all(|c| c.valid())
    }
}

/// Verifies credentials; cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    core: Core,
    fetcher: Arc<Fetcher>,
    /// Foreign status lists already verified and decoded, by URL.
    lists: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<status::VerifiedList>>>>,
}

impl Verifier {
    pub fn new(core: Core) -> Result<Self> {
        let fetcher = Fetcher::new(
            &core.config.verification,
            core.config.private_destinations_allowed(),
        )?;
        Ok(Verifier {
            core,
            fetcher: Arc::new(fetcher),
            lists: Arc::default(),
        })
    }

    fn lists(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<status::VerifiedList>>>
    {
        self.lists.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Verifies a VC-JWT or VP-JWT; `wallet`'s trusted issuers decide
    /// `TrustRegistryMembership`.
    pub async fn verify(&self, wallet: &str, jwt: &str) -> Result<Report> {
        let jws = parse(jwt.trim(), "jwt")?;
        let Some(vp) = jws.payload.get("vp") else {
            if credential_of(&jws.payload).is_none() {
                return Err(Error::InvalidArgument(
                    "jwt: the payload has neither a `vc` nor a `vp` claim".into(),
                ));
            }
            return Ok(Report {
                presentation: vec![],
                holder: None,
                credentials: vec![self.credential(wallet, &jws).await],
            });
        };
        let inner = vp["verifiableCredential"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if inner.len() > MAX_CREDENTIALS {
            return Err(Error::InvalidArgument(format!(
                "jwt: {} credentials in the presentation, over {MAX_CREDENTIALS}",
                inner.len()
            )));
        }
        let mut credentials = Vec::with_capacity(inner.len());
        for (i, c) in inner.iter().enumerate() {
            let what = format!("vp.verifiableCredential[{i}]");
            let c = c
                .as_str()
                .ok_or_else(|| Error::InvalidArgument(format!("{what} is not a compact VC-JWT")))?;
            let c = parse(c, &what)?;
            credentials.push(self.credential(wallet, &c).await);
        }
        Ok(Report {
            presentation: vec![
                self.signature(&jws).await,
                validity(&self.core, &jws.payload),
            ],
            holder: jws.payload["iss"].as_str().map(str::to_string),
            credentials,
        })
    }

    async fn credential(&self, wallet: &str, jws: &Jws) -> CredentialReport {
        let p = &jws.payload;
        let vc = credential_of(p).unwrap_or(&Value::Null);
        let issuer = p["iss"]
            .as_str()
            .or_else(|| issuer_of(vc))
            .unwrap_or_default()
            .to_string();
        let checks = vec![
            self.signature(jws).await,
            issuer_is_signer(jws, vc),
            validity(&self.core, p),
            match vc.get("credentialStatus") {
                None => Check::not_applicable(STATUS, "the credential names no status"),
                Some(entries) => status::check(self, &issuer, entries).await,
            },
            schema::check(self, vc).await,
            self.trust(wallet, &issuer),
        ];
        CredentialReport {
            id: p["jti"]
                .as_str()
                .or_else(|| vc["id"].as_str())
                .unwrap_or_default()
                .to_string(),
            subject: p["sub"]
                .as_str()
                .or_else(|| vc["credentialSubject"]["id"].as_str())
                .unwrap_or_default()
                .to_string(),
            types: vc["type"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            issuer,
            checks,
        }
    }

    /// The signature, by the key the `kid` names, of the DID it belongs to.
    async fn signature(&self, jws: &Jws) -> Check {
        let outcome = async {
            let kid = jws.kid().map_err(|e| e.to_string())?;
            let signer = self.resolve(did::did_of(kid)).await?;
            jws.verify_with(&signer).map_err(|e| e.to_string())
        };
        Check::of(SIGNATURE, outcome.await)
    }

    /// A DID's keys: did:key and did:peer offline, did:web fetched.
    async fn resolve(&self, did: &str) -> std::result::Result<Arc<ResolvedDid>, String> {
        if !did.starts_with(did::web::PREFIX) {
            return did::resolve(did).map_err(|e| e.to_string());
        }
        let url = did::web::document_url(did).map_err(|e| e.to_string())?;
        let body = self.fetcher.get(&url).await.map_err(|e| e.to_string())?;
        let document: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("the DID document at {url} is not JSON: {e}"))?;
        did::web::from_document(did, &document)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }

    fn trust(&self, wallet: &str, issuer: &str) -> Check {
        let store = &self.core.store;
        match store.has_trusted_issuers(wallet) {
            Err(e) => Check::fail(TRUST, format!("reading the trusted issuers: {e}")),
            Ok(false) => Check::not_applicable(TRUST, "the wallet lists no trusted issuers"),
            Ok(true) => match store.trusted_issuer(wallet, issuer) {
                Ok(Some(_)) => Check::pass(TRUST),
                Ok(None) => Check::fail(
                    TRUST,
                    format!(
                        "issuer {} is not among the wallet's trusted issuers",
                        crate::error::clip(issuer, SHOWN)
                    ),
                ),
                Err(e) => Check::fail(TRUST, format!("reading the trusted issuers: {e}")),
            },
        }
    }
}

fn parse(jwt: &str, what: &str) -> Result<Jws> {
    vc::parse_jwt(jwt).map_err(|e| Error::InvalidArgument(format!("{what}: {e}")))
}

/// The credential in a JWT payload: its `vc` claim (VC-JWT, VC Data Model
/// 1.1), or the payload itself when it is a credential (VC-JOSE, 2.0).
pub(crate) fn credential_of(payload: &Value) -> Option<&Value> {
    match payload.get("vc") {
        Some(vc) => Some(vc).filter(|vc| vc.is_object()),
        None => Some(payload).filter(|p| p.get("credentialSubject").is_some()),
    }
}

/// A credential's `issuer`: a DID, or an object with one as its `id`.
fn issuer_of(vc: &Value) -> Option<&str> {
    vc["issuer"]
        .as_str()
        .or_else(|| vc["issuer"]["id"].as_str())
}

/// The `kid`'s DID is the `iss`, and the credential's own `issuer` (if it
/// names one) is that DID too.
fn issuer_is_signer(jws: &Jws, vc: &Value) -> Check {
    let outcome = (|| {
        let kid = jws.kid().map_err(|e| e.to_string())?;
        let signer = did::did_of(kid);
        let iss = jws.payload["iss"].as_str().or_else(|| issuer_of(vc));
        let shown = |s: &str| crate::error::clip(s, SHOWN);
        match iss {
            None => return Err("the credential names no issuer".to_string()),
            Some(iss) if iss != signer => {
                return Err(format!(
                    "issuer {} is not the signer {}",
                    shown(iss),
                    shown(signer)
                ));
            }
            Some(_) => {}
        }
        match issuer_of(vc) {
            Some(claimed) if claimed != signer => Err(format!(
                "the credential's issuer {} is not the signer {}",
                shown(claimed),
                shown(signer)
            )),
            _ => Ok(()),
        }
    })();
    Check::of(ISSUER_IS_SIGNER, outcome)
}

/// `nbf` and `exp` against the clock, with `verification.clock_skew_secs`.
fn validity(core: &Core, payload: &Value) -> Check {
    let skew = core.config.verification.clock_skew_secs;
    let now = crate::now_secs();
    let time = |name: &str| match payload.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("`{name}` is not a number of seconds")),
    };
    let outcome = (|| {
        let (nbf, exp) = (time("nbf")?, time("exp")?);
        if let Some(nbf) = nbf.filter(|nbf| *nbf > now + skew) {
            return Err(format!("not valid before {nbf} (now {now})"));
        }
        if let Some(exp) = exp.filter(|exp| exp + skew <= now) {
            return Err(format!("expired at {exp} (now {now})"));
        }
        Ok(())
    })();
    Check::of(VALIDITY, outcome)
}

#[cfg(test)]
mod tests;
