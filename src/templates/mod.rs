//! Credential templates: an issuer wallet's named kinds of credential —
//! types, a JSON Schema for the claims, default and maximum validity, a
//! default issuer DID. An offer (or custodial issuance) that names one is
//! checked against it before anything is stored or sent ([`apply`]), and
//! its credential's `credentialSchema` points at the schema, published by
//! [`routes`] at `<public base>/schemas/<template id>` so that any verifier
//! can check `SchemaConformance`. Templates do not change once made; one
//! that should no longer be used is archived.

mod serve;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::{Map, Value};

pub use serve::routes;

use crate::Core;
use crate::error::{Error, Result};
use crate::schema::Validator;
use crate::store::{DidMethod, Template};

/// Largest schema a template may hold, as JSON.
const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Violations an offer's error lists.
const MAX_VIOLATIONS: usize = 20;

/// What a new template says (see [`Template`]).
#[derive(Debug, Clone, Default)]
pub struct NewTemplate {
    pub name: String,
    pub types: Vec<String>,
    pub contexts: Vec<String>,
    pub schema_json: String,
    pub default_validity_secs: u64,
    pub max_validity_secs: u64,
    pub issuer_did: Option<String>,
}

/// Makes a template in `wallet`; the schema must be a valid JSON Schema.
pub fn create(core: &Core, wallet: &str, new: NewTemplate) -> Result<Template> {
    let invalid = |m: String| Error::InvalidArgument(m);
    if new.name.trim().is_empty() || new.name.len() > 256 {
        return Err(invalid("name must be 1 to 256 bytes".into()));
    }
    if new
        .types
        .iter()
        .any(|t| t.trim().is_empty() || t.len() > 256)
        || new.types.len() > 16
    {
        return Err(invalid("types: at most 16, each 1 to 256 bytes".into()));
    }
    if new.contexts.len() > 8
        || new.contexts.iter().any(|c| {
            c.len() > 512
                || url::Url::parse(c).map_or(true, |u| !matches!(u.scheme(), "http" | "https"))
        })
    {
        return Err(invalid(
            "contexts: at most 8, each an http(s) URL of at most 512 bytes".into(),
        ));
    }
    if new.schema_json.len() > MAX_SCHEMA_BYTES {
        return Err(invalid(format!(
            "schema_json is over {MAX_SCHEMA_BYTES} bytes"
        )));
    }
    let schema: Value = serde_json::from_str(&new.schema_json)
        .map_err(|e| invalid(format!("schema_json is not JSON: {e}")))?;
    crate::schema::compile(&schema).map_err(|e| invalid(format!("schema_json: {e}")))?;
    if new.max_validity_secs > 0
        && (new.default_validity_secs == 0 || new.default_validity_secs > new.max_validity_secs)
    {
        return Err(invalid(
            "default_validity_secs must be set and at most max_validity_secs".into(),
        ));
    }
    let issuer_did = new.issuer_did.filter(|d| !d.is_empty());
    if let Some(did) = &issuer_did {
        let rec = core
            .store
            .did(wallet, did)
            .map_err(|_| invalid(format!("issuer_did {did} is not a DID of wallet {wallet}")))?;
        if rec.method != DidMethod::Key {
            return Err(invalid(format!("issuer_did {did} must be a did:key")));
        }
    }
    let t = Template {
        id: uuid::Uuid::new_v4().to_string(),
        wallet_id: wallet.to_string(),
        name: new.name,
        types: new.types,
        contexts: new.contexts,
        schema,
        default_validity_secs: new.default_validity_secs,
        max_validity_secs: new.max_validity_secs,
        issuer_did,
        created_at_ms: crate::now_ms(),
        created_by: crate::actor::current(),
        archived_at_ms: None,
    };
    core.store.transact(|tx| tx.put_template(&t))?;
    Ok(t)
}

/// Archives a template (again: no change): offers may no longer name it.
pub fn archive(core: &Core, wallet: &str, id: &str) -> Result<Template> {
    core.store.transact(|tx| {
        let mut t = tx.template(wallet, id)?;
        if t.archived_at_ms.is_none() {
            t.archived_at_ms = Some(crate::now_ms());
            tx.put_template(&t)?;
        }
        Ok(t)
    })
}

/// Where a template's schema is published.
pub fn schema_url(endpoint: &str, id: &str) -> String {
    let base = endpoint.strip_suffix("/didcomm").unwrap_or(endpoint);
    format!("{}/schemas/{id}", base.trim_end_matches('/'))
}

/// An offer's terms, as asked and as a template makes them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Terms {
    pub types: Vec<String>,
    /// `@context`s added after the VC base context.
    pub contexts: Vec<String>,
    pub schema_id: Option<String>,
    pub validity_period_secs: u64,
    pub issuer_did: Option<String>,
}

/// The terms of an offer of `claims` that names template `id`: its types
/// added, its schema named, its validity defaulted and bounded, its issuer
/// DID unless one is asked; the claims must meet its schema (every
/// violation is listed with its JSON pointer and rule).
pub fn apply(
    core: &Core,
    wallet: &str,
    id: &str,
    claims: &Map<String, Value>,
    asked: Terms,
) -> Result<Terms> {
    let t = core.store.template(wallet, id)?;
    if t.archived_at_ms.is_some() {
        return Err(Error::FailedPrecondition(format!(
            "template {id} is archived"
        )));
    }
    if asked.schema_id.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(Error::InvalidArgument(
            "schema_id: a template names its own schema".into(),
        ));
    }
    let validity = match asked.validity_period_secs {
        0 => t.default_validity_secs,
        asked => asked,
    };
    if t.max_validity_secs > 0 && !(1..=t.max_validity_secs).contains(&validity) {
        return Err(Error::InvalidArgument(format!(
            "validity_period_secs {validity}: template {} allows at most {} s",
            t.name, t.max_validity_secs
        )));
    }
    let violations = crate::schema::violations(
        validator(&t)?.as_ref(),
        &Value::Object(claims.clone()),
        MAX_VIOLATIONS,
    );
    if !violations.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "claims do not meet template {} ({id}): {}",
            t.name,
            violations.join("; ")
        )));
    }
    let mut types = t.types.clone();
    types.extend(asked.types.into_iter().filter(|a| !t.types.contains(a)));
    Ok(Terms {
        types,
        contexts: t.contexts.clone(),
        schema_id: Some(schema_url(&core.endpoint, &t.id)),
        validity_period_secs: validity,
        issuer_did: asked.issuer_did.filter(|d| !d.is_empty()).or(t.issuer_did),
    })
}

/// Compiled schemas by template id: a template never changes, and bulk
/// offers would otherwise compile its schema once per item.
static COMPILED: LazyLock<Mutex<HashMap<String, Arc<Validator>>>> = LazyLock::new(Default::default);
const COMPILED_MAX: usize = 1024;

fn validator(t: &Template) -> Result<Arc<Validator>> {
    let cache = || COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = cache().get(&t.id) {
        return Ok(v.clone());
    }
    // Checked when the template was made; failing now means the stored one changed.
    let v = Arc::new(crate::schema::compile(&t.schema).map_err(Error::Internal)?);
    let mut cache = cache();
    if cache.len() >= COMPILED_MAX {
        cache.clear();
    }
    cache.insert(t.id.clone(), v.clone());
    Ok(v)
}
