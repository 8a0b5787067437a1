//! W3C Verifiable Credentials as JWT (VC-JWT): `alg` by the signer's key
//! type (`EdDSA`, `ES256K`, `ES256`), `kid` = the issuer's DID URL,
//! registered claims `iss`/`sub`/`nbf`/`exp`/`jti` and the credential in
//! `vc`. Verification resolves the issuer DID offline.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::crypto::KeyStore;
use crate::did;
use crate::store::{DidRecord, KeyType, StoredKey};

/// How much of a JWT's header value an error repeats: all of a did:key
/// URL, not all of what a peer may put there.
const SHOWN: usize = 200;

pub const VC_CONTEXT: &str = "https://www.w3.org/2018/credentials/v1";
pub const VC_TYPE: &str = "VerifiableCredential";

/// Why a JWT or the credential in it was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VcError {
    #[error("not a compact JWS: {0}")]
    Malformed(String),
    #[error("unsupported JWT header: {0}")]
    Header(String),
    #[error("the signing key is not the issuer's: {0}")]
    WrongKey(String),
    #[error("JWT alg {alg} does not fit {kid}, a {key_type} key")]
    AlgMismatch {
        alg: &'static str,
        kid: String,
        key_type: KeyType,
    },
    #[error("the signature does not verify")]
    BadSignature,
    #[error("claim `{claim}` is wrong: {why}")]
    Claim { claim: &'static str, why: String },
    #[error("cannot sign: {0}")]
    Signing(String),
}

/// What a credential says, before it is signed.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialSpec<'a> {
    pub id: &'a str,
    /// Types beyond `VerifiableCredential`.
    pub types: &'a [String],
    /// `@context`s after the VC base context (a template's).
    pub contexts: &'a [String],
    pub subject: &'a str,
    pub claims: &'a Map<String, Value>,
    pub schema_id: Option<&'a str>,
    pub issued_at: u64,
    pub validity_secs: u64,
    /// The `credentialStatus` entry (see `crate::status::entry`), if any.
    pub status: Option<&'a Value>,
}

/// A verified JWT: its header and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub header: Value,
    pub payload: Value,
}

/// The JWS `alg` of signatures by a key of `key_type`.
fn alg(key_type: KeyType) -> &'static str {
    match key_type {
        KeyType::Ed25519 => "EdDSA",
        KeyType::Secp256k1 => "ES256K",
        KeyType::P256 => "ES256",
    }
}

/// Signs `payload` as a compact JWS with `key`, the signing key of `signer`
/// (a did:key DID held by this agent); `alg` follows the key's type.
pub fn sign_jwt(
    keys: &KeyStore,
    signer: &DidRecord,
    key: &StoredKey,
    payload: &Value,
) -> Result<String, VcError> {
    let key_type = key
        .kind
        .key_type()
        .ok_or_else(|| VcError::Signing(format!("key {} of {} cannot sign", key.id, signer.did)))?;
    let header = json!({
        "alg": alg(key_type),
        "typ": "JWT",
        "kid": key_id(&signer.did),
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let sig = keys
        .sign_with(&signer.wallet_id, key, input.as_bytes())
        .map_err(|e| VcError::Signing(e.to_string()))?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// The DID URL of a did:key's only verification method.
pub fn key_id(did_key: &str) -> String {
    let fragment = did_key.strip_prefix("did:key:").unwrap_or(did_key);
    format!("{did_key}#{fragment}")
}

/// A compact JWS, decoded but not yet verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Jws {
    pub header: Value,
    pub payload: Value,
    signing_input: String,
    signature: Vec<u8>,
}

/// Decodes a compact JWS whose header and payload are JSON objects.
pub fn parse_jwt(jwt: &str) -> Result<Jws, VcError> {
    let mut parts = jwt.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VcError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    let part = |name: &str, b64: &str| -> Result<Vec<u8>, VcError> {
        URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| VcError::Malformed(format!("{name} is not base64url")))
    };
    let json = |name: &str, bytes: Vec<u8>| -> Result<Value, VcError> {
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| VcError::Malformed(format!("{name} is not a JSON object")))
    };
    Ok(Jws {
        header: json("header", part("header", h)?)?,
        payload: json("payload", part("payload", p)?)?,
        signature: part("signature", s)?,
        signing_input: format!("{h}.{p}"),
    })
}

impl Jws {
    /// The header's `kid`: the DID URL of the signing key.
    pub fn kid(&self) -> Result<&str, VcError> {
        self.header["kid"]
            .as_str()
            .ok_or_else(|| VcError::Header("no kid".into()))
    }

    /// The key type the header's `alg` names (one we verify).
    fn key_type(&self) -> Result<KeyType, VcError> {
        [KeyType::Ed25519, KeyType::Secp256k1, KeyType::P256]
            .into_iter()
            .find(|t| self.header["alg"] == alg(*t))
            .ok_or_else(|| {
                VcError::Header(format!(
                    "alg {} (EdDSA, ES256K or ES256)",
                    crate::error::clip(&self.header["alg"].to_string(), SHOWN)
                ))
            })
    }

    /// Checks the signature against the key of `signer` (the resolved DID
    /// of the `kid`) that the `kid` names.
    pub fn verify_with(&self, signer: &did::ResolvedDid) -> Result<(), VcError> {
        let key_type = self.key_type()?;
        let kid = self.kid()?;
        let key = signer
            .signing_key(kid)
            .map_err(|e| VcError::WrongKey(e.to_string()))?;
        // `alg` is whatever the sender wrote; the key the DID names decides
        // which algorithm may verify, so a token cannot pick the rules it is
        // checked by.
        if key.public.key_type() != key_type {
            return Err(VcError::AlgMismatch {
                alg: alg(key_type),
                kid: crate::error::clip(kid, SHOWN),
                key_type: key.public.key_type(),
            });
        }
        if !key
            .public
            .verify(self.signing_input.as_bytes(), &self.signature)
        {
            return Err(VcError::BadSignature);
        }
        Ok(())
    }
}

/// Checks the signature of a compact JWS against the key its `kid` names,
/// and that this key belongs to `iss` (a DID resolved offline). Returns
/// header and payload.
pub fn verify_jwt(jwt: &str) -> Result<Verified, VcError> {
    let jws = parse_jwt(jwt)?;
    jws.key_type()?;
    let kid = jws.kid()?;
    let iss = jws.payload["iss"].as_str().ok_or(VcError::Claim {
        claim: "iss",
        why: "missing".into(),
    })?;
    if did::did_of(kid) != iss {
        return Err(VcError::WrongKey(format!(
            "kid {} is not a key of {}",
            crate::error::clip(kid, SHOWN),
            crate::error::clip(iss, SHOWN)
        )));
    }
    let resolved = did::resolve(iss).map_err(|e| VcError::WrongKey(e.to_string()))?;
    jws.verify_with(&resolved)?;
    Ok(Verified {
        header: jws.header,
        payload: jws.payload,
    })
}

/// The credential `spec` describes, unsigned, without issuer or dates (an
/// offer in a W3C format carries it; an empty subject is left out).
pub fn unsigned(spec: &CredentialSpec) -> Value {
    let mut types = vec![Value::from(VC_TYPE)];
    types.extend(
        spec.types
            .iter()
            .filter(|t| *t != VC_TYPE)
            .map(|t| Value::from(t.as_str())),
    );
    let mut subject = spec.claims.clone();
    if !spec.subject.is_empty() {
        subject.insert("id".into(), Value::from(spec.subject));
    }
    let mut contexts = vec![Value::from(VC_CONTEXT)];
    contexts.extend(
        spec.contexts
            .iter()
            .filter(|c| *c != VC_CONTEXT)
            .map(|c| Value::from(c.as_str())),
    );
    let mut vc = json!({
        "@context": contexts,
        "type": types,
        "credentialSubject": subject,
    });
    if let Some(schema) = spec.schema_id {
        vc["credentialSchema"] = json!({ "id": schema, "type": "JsonSchema" });
    }
    if let Some(status) = spec.status {
        vc["credentialStatus"] = status.clone();
    }
    vc
}

/// Issues a VC-JWT for `spec`, signed by `issuer` (a did:key) with `key`.
pub fn issue(
    keys: &KeyStore,
    issuer: &DidRecord,
    key: &StoredKey,
    spec: &CredentialSpec,
) -> Result<String, VcError> {
    let vc = unsigned(spec);
    let mut payload = json!({
        "iss": issuer.did,
        "sub": spec.subject,
        "nbf": spec.issued_at,
        "jti": spec.id,
        "vc": vc,
    });
    if spec.validity_secs > 0 {
        payload["exp"] = Value::from(spec.issued_at + spec.validity_secs);
    }
    sign_jwt(keys, issuer, key, &payload)
}

/// A credential whose signature, issuer and subject were checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    pub id: String,
    pub issuer: String,
    pub subject: String,
    pub types: Vec<String>,
    pub claims: Map<String, Value>,
    pub not_before: u64,
    pub expires: Option<u64>,
}

/// Verifies a VC-JWT: the signature by a key of `iss`, `iss` = `issuer`
/// (when the caller knows who must have issued it), `sub` = `subject`, a well-formed `vc`, and the validity window at `now`.
pub fn verify(
    jwt: &str,
    issuer: Option<&str>,
    subject: &str,
    now: u64,
) -> Result<Credential, VcError> {
    let Verified { payload, .. } = verify_jwt(jwt)?;
    let claim = |claim: &'static str, why: String| VcError::Claim { claim, why };
    let str_claim = |name: &'static str| {
        payload[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| claim(name, "missing".into()))
    };
    let iss = str_claim("iss")?;
    if let Some(issuer) = issuer.filter(|i| *i != iss) {
        return Err(claim("iss", format!("{iss}, expected {issuer}")));
    }
    let sub = str_claim("sub")?;
    if sub != subject {
        return Err(claim("sub", format!("{sub}, expected {subject}")));
    }
    let id = str_claim("jti")?;
    let nbf = payload["nbf"]
        .as_u64()
        .ok_or_else(|| claim("nbf", "missing".into()))?;
    // A minute of clock skew between issuer and holder is tolerated.
    if nbf > now + 60 {
        return Err(claim("nbf", format!("{nbf} is in the future")));
    }
    let exp = payload
        .get("exp")
        .map(|v| {
            v.as_u64()
                .ok_or_else(|| claim("exp", "not a number".into()))
        })
        .transpose()?;
    if let Some(exp) = exp.filter(|e| *e <= now) {
        return Err(claim("exp", format!("expired at {exp}")));
    }
    let vc = &payload["vc"];
    let types: Vec<String> = vc["type"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !types.iter().any(|t| t == VC_TYPE) {
        return Err(claim("vc", format!("type does not include {VC_TYPE}")));
    }
    if !vc["@context"]
        .as_array()
        .is_some_and(|c| c.first() == Some(&Value::from(VC_CONTEXT)))
    {
        return Err(claim(
            "vc",
            format!("@context must start with {VC_CONTEXT}"),
        ));
    }
    let mut claims = vc["credentialSubject"]
        .as_object()
        .cloned()
        .ok_or_else(|| claim("vc", "credentialSubject is not an object".into()))?;
    if let Some(id) = claims.remove("id").filter(|id| id != subject) {
        return Err(claim(
            "vc",
            format!("credentialSubject.id {id} is not {subject}"),
        ));
    }
    Ok(Credential {
        id,
        issuer: iss,
        subject: sub,
        types,
        claims,
        not_before: nbf,
        expires: exp,
    })
}

#[cfg(test)]
mod tests;
