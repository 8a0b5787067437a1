//! Issue Credential 3.0 messages as the spec writes them, shaped like
//! Hyperledger Identus's (`prism/jwt` attachments, a credential preview
//! with name/value attributes) so a peer of that family can read ours.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

use crate::didcomm::{Attachment, Message};
use crate::error::{Error, Result};
use crate::store::CredentialRecord;

pub const PROPOSE: &str = "https://didcomm.org/issue-credential/3.0/propose-credential";
pub const OFFER: &str = "https://didcomm.org/issue-credential/3.0/offer-credential";
pub const REQUEST: &str = "https://didcomm.org/issue-credential/3.0/request-credential";
pub const ISSUE: &str = "https://didcomm.org/issue-credential/3.0/issue-credential";
pub const ACK: &str = "https://didcomm.org/issue-credential/3.0/ack";
/// The generic ack some agents send instead of the protocol's own.
pub const NOTIFICATION_ACK: &str = "https://didcomm.org/notification/1.0/ack";
/// What the spec and Identus's SDKs call the preview (any type is read).
pub const PREVIEW: &str = "https://didcomm.org/issue-credential/3.0/credential-preview";
/// Identus's JWT format: the default.
pub const FORMAT: &str = "prism/jwt";
/// Every attachment format spoken, default first. The W3C ones carry an
/// unsigned VC in the offer; all three a proof JWT in the request and a
/// VC-JWT in the credential.
pub const FORMATS: [&str; 3] = [FORMAT, "jwt_vc_json", "vc+jwt"];
const JSON: &str = "application/json";

/// `format` if it is one spoken here.
pub fn spoken(format: &str) -> Result<&'static str> {
    FORMATS.into_iter().find(|f| *f == format).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "credential format {format:?} is not spoken here ({})",
            FORMATS.join(", ")
        ))
    })
}

fn attachment(format: &str, media_type: &str, data: Value) -> Attachment {
    Attachment {
        id: Some(uuid::Uuid::new_v4().to_string()),
        media_type: Some(media_type.into()),
        format: Some(format.into()),
        data: data.as_object().cloned().unwrap_or_default(),
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
            // As Identus and the WACI text: the value is base64url(JSON).
            other => json!({
                "name": name,
                "value": URL_SAFE_NO_PAD.encode(other.to_string()),
                "media_type": JSON,
            }),
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
    let options = json!({ "challenge": r.challenge, "domain": r.audience() });
    let data = if r.format == FORMAT {
        let mut credential = json!({
            "issuer": r.issuer_did,
            "type": r.types,
            "claims": r.claims,
            "validity_period": r.validity_period_secs,
        });
        if let Some(schema) = &r.schema_id {
            credential["schema_id"] = Value::from(schema.as_str());
        }
        // Identus reads options and presentation_definition; the rest is ours.
        json!({
            "options": options,
            "presentation_definition": {
                "id": r.thid,
                "input_descriptors": [],
                "format": { "jwt": { "alg": ["EdDSA", "ES256K", "ES256"] } },
            },
            "credential": credential,
        })
    } else {
        let spec = crate::vc::CredentialSpec {
            id: "",
            types: &r.types,
            contexts: &r.contexts,
            subject: "",
            claims: &r.claims,
            schema_id: r.schema_id.as_deref(),
            issued_at: 0,
            validity_secs: r.validity_period_secs,
            status: None,
        };
        let mut vc = crate::vc::unsigned(&spec);
        vc["issuer"] = Value::from(r.issuer_did.as_str());
        json!({ "options": options, "credential": vc, "validity_period": r.validity_period_secs })
    };
    m.attachments = vec![attachment(&r.format, JSON, json!({ "json": data }))];
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
    /// The audience the request's proof names (`options.domain`); empty:
    /// the issuer DID.
    pub domain: String,
    /// The attachment format the thread speaks.
    pub format: String,
    pub comment: Option<String>,
}

fn invalid(what: &str) -> Error {
    Error::InvalidArgument(format!("offer-credential: {what}"))
}

/// Reads an offer in any format spoken here: claims from the attached
/// credential (agentd's `claims` or a W3C `credentialSubject`), else from
/// the preview. An offer only in other formats is refused.
pub fn parse_offer(m: &Message) -> Result<OfferTerms> {
    let ours = m
        .attachments
        .iter()
        .find(|a| a.format.as_deref().is_some_and(|f| spoken(f).is_ok()));
    if ours.is_none() && !m.attachments.is_empty() {
        let offered: Vec<&str> = m
            .attachments
            .iter()
            .map(|a| a.format.as_deref().unwrap_or("(none)"))
            .collect();
        return Err(Error::Unsupported(format!(
            "offer-credential in {}: the formats spoken here are {}",
            crate::error::clip(&offered.join(", "), 200),
            FORMATS.join(", ")
        )));
    }
    let format = ours
        .and_then(|a| a.format.as_deref())
        .map_or(FORMAT, |f| spoken(f).unwrap_or(FORMAT));
    let data = ours.map(|a| attached_json(a, OFFER)).transpose()?;
    let data = data.as_ref();
    let credential = data.map(|j| &j["credential"]).filter(|c| c.is_object());
    let options = data.map(|j| &j["options"]);
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let w3c = credential.filter(|c| c.get("credentialSubject").is_some());
    let claims = match (w3c, credential.map(|c| &c["claims"])) {
        (Some(vc), _) => {
            let mut subject = vc["credentialSubject"]
                .as_object()
                .cloned()
                .ok_or_else(|| invalid("credentialSubject is not a JSON object"))?;
            subject.remove("id");
            subject
        }
        (None, Some(Value::Object(o))) => o.clone(),
        (None, Some(Value::Null) | None) => preview_claims(&m.body["credential_preview"])?,
        (None, Some(_)) => return Err(invalid("credential claims are not a JSON object")),
    };
    let types = match credential.map(|c| &c["type"]) {
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| t.as_str().map(str::to_string))
            .filter(|t| t.as_deref() != Some(crate::vc::VC_TYPE))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("credential types are not strings"))?,
        _ => vec![],
    };
    let issuer = credential.map(|c| &c["issuer"]);
    let issuer_did = text(issuer)
        .or_else(|| text(issuer.map(|i| &i["id"])))
        .unwrap_or_default();
    let schema_id = text(credential.map(|c| &c["schema_id"]))
        .or_else(|| text(w3c.map(|c| &c["credentialSchema"]["id"])))
        .or_else(|| text(m.body["credential_preview"]["schema_ids"].get(0)))
        .or_else(|| text(m.body["credential_preview"].get("schema_id")));
    let validity = credential
        .and_then(|c| c["validity_period"].as_u64())
        .or_else(|| data.and_then(|d| d["validity_period"].as_u64()));
    Ok(OfferTerms {
        claims,
        types,
        schema_id,
        validity_period_secs: validity.unwrap_or(0),
        issuer_did,
        challenge: text(options.map(|o| &o["challenge"])).unwrap_or_default(),
        domain: text(options.map(|o| &o["domain"])).unwrap_or_default(),
        format: format.to_string(),
        comment: text(m.body.get("comment")),
    })
}

/// The preview's attributes, in each shape peers send: under `body` (the
/// spec, Identus) or not (Credo), `media_type` or `mime-type`, a JSON
/// value as base64url (Identus, the WACI text) or as JSON text.
fn preview_claims(preview: &Value) -> Result<Map<String, Value>> {
    let attributes = preview["body"]["attributes"]
        .as_array()
        .or_else(|| preview["attributes"].as_array())
        .ok_or_else(|| invalid("no credential_preview attributes and no claims attachment"))?;
    let mut claims = Map::new();
    for a in attributes {
        let name = a["name"]
            .as_str()
            .ok_or_else(|| invalid("a preview attribute has no name"))?;
        let value = a["value"]
            .as_str()
            .ok_or_else(|| invalid("a preview attribute value is not a string"))?;
        let media_type = a.get("media_type").or_else(|| a.get("mime-type"));
        let value = if media_type.and_then(Value::as_str) == Some(JSON) {
            base64url(value)
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .or_else(|| serde_json::from_str(value).ok())
                .ok_or_else(|| invalid("an application/json attribute does not parse"))?
        } else {
            Value::from(value)
        };
        claims.insert(name.to_string(), value);
    }
    Ok(claims)
}

/// Base64url or base64, padded or not.
fn base64url(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(text))
        .or_else(|_| STANDARD.decode(text))
        .ok()
}

/// An attachment's data as JSON: inline `json`, or `base64` of JSON.
/// `links` are not fetched: a peer does not get to make us fetch URLs.
fn attached_json(a: &Attachment, typ: &str) -> Result<Value> {
    let bad = |why: &str| Error::InvalidArgument(format!("{typ}: {why}"));
    if let Some(json) = a.data.get("json").filter(|j| !j.is_null()) {
        return Ok(json.clone());
    }
    if let Some(b64) = a.data.get("base64").and_then(Value::as_str) {
        let bytes = base64url(b64).ok_or_else(|| bad("the attachment is not base64"))?;
        return serde_json::from_slice(&bytes).map_err(|_| bad("the attachment is not JSON"));
    }
    Err(no_inline_data(a, typ))
}

fn no_inline_data(a: &Attachment, typ: &str) -> Error {
    if a.data.contains_key("links") {
        Error::Unsupported(format!(
            "{typ}: attachments by `links` are not fetched; send the data inline (base64 or json)"
        ))
    } else {
        Error::InvalidArgument(format!("{typ}: the attachment has no data"))
    }
}

fn jwt_attachment(format: &str, jwt: &str) -> Attachment {
    attachment(
        format,
        "application/jwt",
        json!({ "base64": URL_SAFE_NO_PAD.encode(jwt) }),
    )
}

/// The JWT in a message's attachment of a format spoken here: `base64`
/// (base64url or base64) of the compact JWT, or `json` holding it as a
/// string.
pub fn attached_jwt(m: &Message) -> Result<String> {
    let bad = |why: &str| Error::InvalidArgument(format!("{}: {why}", m.typ));
    let a = m
        .attachments
        .iter()
        .find(|a| a.format.as_deref().is_some_and(|f| spoken(f).is_ok()))
        .ok_or_else(|| bad(&format!("no attachment in {}", FORMATS.join(", "))))?;
    if let Some(jwt) = a.data.get("json").and_then(Value::as_str) {
        return Ok(jwt.to_string());
    }
    let b64 = a
        .data
        .get("base64")
        .and_then(Value::as_str)
        .ok_or_else(|| no_inline_data(a, &m.typ))?;
    let bytes = base64url(b64).ok_or_else(|| bad("the attachment is not base64"))?;
    String::from_utf8(bytes).map_err(|_| bad("the attachment is not text"))
}

/// The holder's request: a JWT by the subject DID over the offer's challenge.
pub fn request(r: &CredentialRecord, proof_jwt: &str) -> Message {
    let mut m = Message::new(REQUEST, json!({}));
    m.thid = Some(r.thid.clone());
    m.attachments = vec![jwt_attachment(&r.format, proof_jwt)];
    m
}

/// The payload the subject DID signs to prove control of it.
pub fn proof_payload(subject: &str, r: &CredentialRecord) -> Value {
    json!({
        "iss": subject,
        "aud": r.audience(),
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
    m.attachments = vec![jwt_attachment(&r.format, credential_jwt)];
    if r.ack_requested {
        m.extra.insert("please_ack".into(), json!([""]));
    }
    m
}

pub fn ack(r: &CredentialRecord) -> Message {
    let mut m = Message::new(ACK, json!({ "status": "OK" }));
    m.thid = Some(r.thid.clone());
    m
}
