//! `SchemaConformance`: the credential's `credentialSchema` (one or more),
//! fetched when its id is an http(s) URL, compiled as JSON Schema and
//! applied to `credentialSubject` without its `id` (as Identus and our own
//! templates describe claims). A schema id that is not a URL cannot be resolved: the check
//! does not apply. Compiling and applying is [`crate::schema`]'s.

use serde_json::Value;

use super::{Check, SCHEMA, SHOWN, Verifier};

/// Schemas one credential may name.
const MAX_SCHEMAS: usize = 4;
/// Violations reported per schema.
const MAX_MESSAGES: usize = 10;

pub(super) async fn check(v: &Verifier, vc: &Value) -> Check {
    let schemas: Vec<&Value> = match vc.get("credentialSchema") {
        None => return Check::not_applicable(SCHEMA, "the credential names no schema"),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(one) => vec![one],
    };
    if schemas.len() > MAX_SCHEMAS {
        return Check::fail(
            SCHEMA,
            format!("{} schemas, over {MAX_SCHEMAS}", schemas.len()),
        );
    }
    // The claims: `id` names the subject and is no claim (schemas of
    // templates, ours and Identus's, describe the claims alone).
    let mut claims = vc["credentialSubject"].clone();
    if let Some(o) = claims.as_object_mut() {
        o.remove("id");
    }
    let mut messages = Vec::new();
    let mut resolved = 0;
    for schema in schemas {
        let Some(id) = schema["id"].as_str() else {
            messages.push("a credentialSchema has no id".to_string());
            continue;
        };
        let shown = crate::error::clip(id, SHOWN);
        if !(id.starts_with("https://") || id.starts_with("http://")) {
            continue;
        }
        resolved += 1;
        match v.fetcher.get(id).await {
            Err(e) => messages.push(e.to_string()),
            Ok(body) => messages.extend(conform(&shown, &body, &claims)),
        }
    }
    match (resolved, messages.is_empty()) {
        (_, false) => Check {
            messages,
            ..Check::fail(SCHEMA, "")
        },
        (0, true) => Check::not_applicable(
            SCHEMA,
            "no schema the credential names can be resolved (not an http(s) URL)",
        ),
        _ => Check::pass(SCHEMA),
    }
}

/// What is wrong with `subject` by the schema in `body` (nothing: conforms).
fn conform(shown: &str, body: &[u8], subject: &Value) -> Vec<String> {
    let schema: Value = match serde_json::from_slice(body) {
        Ok(s) => s,
        Err(e) => return vec![format!("schema {shown} is not JSON: {e}")],
    };
    match crate::schema::compile(&schema) {
        Ok(validator) => crate::schema::violations(&validator, subject, MAX_MESSAGES)
            .into_iter()
            .map(|v| format!("credentialSubject{v}"))
            .collect(),
        Err(e) => vec![format!("schema {shown}: {e}")],
    }
}
