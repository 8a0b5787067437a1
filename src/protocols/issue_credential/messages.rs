//! Issue Credential 3.0 messages as the spec writes them, shaped like
//! Hyperledger Identus's (`prism/jwt` attachments, a credential preview
//! with name/value attributes) so a peer of that family can read ours.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

use crate::didcomm::{Attachment, Message};
use crate::error::{Error, Result};
use crate::store::CredentialRecord;

pub const PROPOSE: &str = "https://didcomm.org/issue-credential/3.0/propose-credential";
pub const OFFER: &str = "https://didcomm.org/issue-credential/3.0/offer-credential";
pub const REQUEST: &str = "https://didcomm.org/issue-credential/3.0/request-credential";
pub const ISSUE: &str = "https://didcomm.org/issue-credential/3.0/issue-credential";
pub const ACK: &str = "https://didcomm.org/issue-credential/3.0/ack";
pub const PREVIEW: &str = "https://didcomm.org/issue-credential/3.0/credential-credential-preview";
/// The attachment format for JWT credentials (as Identus registers it).
pub const FORMAT: &str = "prism/jwt";
const JSON: &str = "application/json";

fn attachment(data: Map<String, Value>) -> Attachment {
    Attachment {
        id: Some(uuid::Uuid::new_v4().to_string()),
        media_type: Some(JSON.into()),
        format: Some(FORMAT.into()),
        data,
        extra: Map::new(),
    }
}

fn with_comment(mut body: Value, comment: Option<&str>) -> Value {
    if let Some(c) = comment.filter(|c| !c.is_empty()) {
        body["comment"] = Value::from(c);
    }
    body
}

/// The offer that starts the record's thread (its id is the thread id).
pub fn offer(r: &CredentialRecord) -> Message {
    let attributes: Vec<Value> = r
        .claims
        .iter()
        .map(|(name, value)| match value {
            Value::String(s) => json!({ "name": name, "value": s }),
            other => json!({ "name": name, "value": other.to_string(), "media_type": JSON }),
        })
        .collect();
    let mut preview = json!({ "type": PREVIEW, "body": { "attributes": attributes } });
    if let Some(schema) = &r.schema_id {
        preview["schema_ids"] = json!([schema]);
    }
    let body = with_comment(
        json!({ "goal_code": "issue-vc", "credential_preview": preview }),
        r.comment.as_deref(),
    );
    let mut m = Message::new(OFFER, body);
    m.id = r.thid.clone();
    m.expires_time = r.expires_at_ms.map(|ms| (ms / 1000) as u64);
    let mut credential = json!({
        "issuer": r.issuer_did,
        "type": r.types,
        "claims": r.claims,
        "validity_period": r.validity_period_secs,
    });
    if let Some(schema) = &r.schema_id {
        credential["schema_id"] = Value::from(schema.as_str());
    }
    let data = json!({
        "json": {
            "options": { "challenge": r.challenge, "domain": r.issuer_did },
            "credential": credential,
        }
    });
    m.attachments = vec![attachment(data.as_object().cloned().unwrap_or_default())];
    m
}

/// What an offer says, as the holder reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferTerms {
    pub claims: Map<String, Value>,
    pub types: Vec<String>,
    pub schema_id: Option<String>,
    pub validity_period_secs: u64,
    /// Empty when the offer does not name its issuer.
    pub issuer_did: String,
    pub challenge: String,
    pub comment: Option<String>,
}

fn invalid(what: &str) -> Error {
    Error::InvalidArgument(format!("offer-credential: {what}"))
}

/// Reads an offer: the claims from our attachment, or from the credential
/// preview when a peer sends only that.
pub fn parse_offer(m: &Message) -> Result<OfferTerms> {
    let ours = m
        .attachments
        .iter()
        .find(|a| a.format.as_deref() == Some(FORMAT))
        .and_then(|a| a.data.get("json"));
    let credential = ours.map(|j| &j["credential"]);
    let options = ours.map(|j| &j["options"]);
    let claims = match credential.map(|c| &c["claims"]) {
        Some(Value::Object(o)) => o.clone(),
        Some(Value::Null) | None => preview_claims(&m.body["credential_preview"])?,
        Some(_) => return Err(invalid("credential claims are not a JSON object")),
    };
    let types = match credential.map(|c| &c["type"]) {
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| t.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("credential types are not strings"))?,
        _ => vec![],
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let schema_id = text(credential.map(|c| &c["schema_id"]))
        .or_else(|| text(m.body["credential_preview"]["schema_ids"].get(0)));
    Ok(OfferTerms {
        claims,
        types,
        schema_id,
        validity_period_secs: credential
            .and_then(|c| c["validity_period"].as_u64())
            .unwrap_or(0),
        issuer_did: text(credential.map(|c| &c["issuer"])).unwrap_or_default(),
        challenge: text(options.map(|o| &o["challenge"])).unwrap_or_default(),
        comment: text(m.body.get("comment")),
    })
}

fn preview_claims(preview: &Value) -> Result<Map<String, Value>> {
    let attributes = preview["body"]["attributes"]
        .as_array()
        .ok_or_else(|| invalid("no credential_preview attributes and no claims attachment"))?;
    let mut claims = Map::new();
    for a in attributes {
        let name = a["name"]
            .as_str()
            .ok_or_else(|| invalid("a preview attribute has no name"))?;
        let value = a["value"]
            .as_str()
            .ok_or_else(|| invalid("a preview attribute value is not a string"))?;
        let value = if a["media_type"] == JSON {
            serde_json::from_str(value)
                .map_err(|_| invalid("an application/json attribute does not parse"))?
        } else {
            Value::from(value)
        };
        claims.insert(name.to_string(), value);
    }
    Ok(claims)
}

fn jwt_attachment(jwt: &str) -> Attachment {
    let data = json!({ "base64": URL_SAFE_NO_PAD.encode(jwt) });
    attachment(data.as_object().cloned().unwrap_or_default())
}

/// The JWT in a message's `prism/jwt` attachment (base64 or base64url).
pub fn attached_jwt(m: &Message) -> Result<String> {
    let bad = |why: &str| Error::InvalidArgument(format!("{}: {why}", m.typ));
    let a = m
        .attachments
        .iter()
        .find(|a| a.format.as_deref() == Some(FORMAT))
        .ok_or_else(|| bad("no prism/jwt attachment"))?;
    let b64 = a
        .data
        .get("base64")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("the attachment has no base64 data"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(b64.trim_end_matches('='))
        .or_else(|_| STANDARD.decode(b64))
        .map_err(|_| bad("the attachment is not base64"))?;
    String::from_utf8(bytes).map_err(|_| bad("the attachment is not text"))
}

/// The holder's request: a JWT by the subject DID over the offer's challenge.
pub fn request(r: &CredentialRecord, proof_jwt: &str) -> Message {
    let mut m = Message::new(REQUEST, with_comment(json!({}), None));
    m.thid = Some(r.thid.clone());
    m.attachments = vec![jwt_attachment(proof_jwt)];
    m
}

/// The payload the subject DID signs to prove control of it.
pub fn proof_payload(subject: &str, r: &CredentialRecord) -> Value {
    json!({
        "iss": subject,
        "aud": r.issuer_did,
        "nonce": r.challenge,
        "iat": crate::now_secs(),
        "vp": {
            "@context": [crate::vc::VC_CONTEXT],
            "type": ["VerifiablePresentation"],
            "holder": subject,
        },
    })
}

pub fn issue(r: &CredentialRecord, credential_jwt: &str) -> Message {
    let mut m = Message::new(ISSUE, with_comment(json!({}), r.comment.as_deref()));
    m.thid = Some(r.thid.clone());
    m.attachments = vec![jwt_attachment(credential_jwt)];
    m
}

pub fn ack(r: &CredentialRecord) -> Message {
    let mut m = Message::new(ACK, json!({ "status": "OK" }));
    m.thid = Some(r.thid.clone());
    m
}
