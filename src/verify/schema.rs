//! `SchemaConformance`: the credential's `credentialSchema` (one or more),
//! fetched when its id is an http(s) URL, compiled as JSON Schema and
//! applied to `credentialSubject` (as Identus and our own schemas describe
//! claims). A schema id that is not a URL cannot be resolved: the check
//! does not apply. Patterns use the linear-time `regex` engine, since the
//! schema comes from whoever wrote the credential.

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
            Ok(body) => messages.extend(conform(&shown, &body, &vc["credentialSubject"])),
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
    let validator = match jsonschema::options()
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(&schema)
    {
        Ok(v) => v,
        Err(e) => return vec![format!("schema {shown} does not compile: {e}")],
    };
    validator
        .iter_errors(subject)
        .take(MAX_MESSAGES)
        .map(|e| {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            format!("credentialSubject{at}: {e}")
        })
        .collect()
}
