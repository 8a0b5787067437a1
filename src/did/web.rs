//! did:web (W3C CCG did:web method): where a DID's document lives, and the
//! signing keys in a fetched document. The fetch itself is the caller's
//! (it is network I/O, bounded by `[verification]`); this stays offline.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::{DidError, MAX_ELEMENTS, ResolvedDid, VerificationKey, multikey};
use crate::crypto::PublicKey;
use crate::store::KeyType;

pub const PREFIX: &str = "did:web:";

/// The HTTPS URL of a did:web's document: `did:web:example.com` →
/// `https://example.com/.well-known/did.json`, `did:web:example.com:u:alice`
/// → `https://example.com/u/alice/did.json`; `%3A` in the host is a port.
pub fn document_url(did: &str) -> Result<String, DidError> {
    let rest = did
        .strip_prefix(PREFIX)
        .ok_or_else(|| DidError::malformed(did, "not a did:web"))?;
    let mut parts = rest.split(':');
    let host = parts
        .next()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| DidError::malformed(did, "no host"))?
        .replace("%3A", ":")
        .replace("%3a", ":");
    let path: Vec<&str> = parts.collect();
    let allowed = |s: &str| {
        !s.is_empty()
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~%".contains(c))
    };
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        || !path.iter().all(|s| allowed(s))
    {
        return Err(DidError::malformed(did, "not a host and path"));
    }
    let url = if path.is_empty() {
        format!("https://{host}/.well-known/did.json")
    } else {
        format!("https://{host}/{}/did.json", path.join("/"))
    };
    url::Url::parse(&url).map_err(|e| DidError::malformed(did, e.to_string()))?;
    Ok(url)
}

/// The signing keys of `did`'s fetched `document` (Multikey or JWK
/// verification methods; other kinds, and key-agreement keys, are skipped).
/// The document must name `did` as its `id`.
pub fn from_document(did: &str, document: &Value) -> Result<ResolvedDid, DidError> {
    if document["id"].as_str() != Some(did) {
        return Err(DidError::malformed(
            did,
            "the document's id is not this DID",
        ));
    }
    let methods = document["verificationMethod"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let signing = methods
        .iter()
        .take(MAX_ELEMENTS)
        .filter_map(|vm| {
            let id = vm["id"].as_str()?;
            let kid = if id.starts_with('#') {
                format!("{did}{id}")
            } else {
                id.to_string()
            };
            let public = match (vm["publicKeyMultibase"].as_str(), vm.get("publicKeyJwk")) {
                (Some(mb), _) => multikey::decode_signing(did, mb).ok()?,
                (None, Some(jwk)) => from_jwk(jwk)?,
                _ => return None,
            };
            Some(VerificationKey { kid, public })
        })
        .collect();
    Ok(ResolvedDid {
        did: did.to_string(),
        signing,
        agreement: vec![],
        services: vec![],
    })
}

/// An Ed25519 (`OKP`), secp256k1 or P-256 (`EC`) public JWK.
fn from_jwk(jwk: &Value) -> Option<PublicKey> {
    let coordinate = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str()?).ok();
    match (jwk["kty"].as_str()?, jwk["crv"].as_str()?) {
        ("OKP", "Ed25519") => PublicKey::from_bytes(KeyType::Ed25519, &coordinate("x")?).ok(),
        ("EC", crv) => {
            let key_type = match crv {
                "secp256k1" => KeyType::Secp256k1,
                "P-256" => KeyType::P256,
                _ => return None,
            };
            let mut point = vec![0x04];
            point.extend(coordinate("x")?);
            point.extend(coordinate("y")?);
            PublicKey::from_bytes(key_type, &point).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn document_urls_follow_the_method() {
        let cases = [
            (
                "did:web:example.com",
                "https://example.com/.well-known/did.json",
            ),
            (
                "did:web:example.com%3A8443",
                "https://example.com:8443/.well-known/did.json",
            ),
            (
                "did:web:example.com:users:alice",
                "https://example.com/users/alice/did.json",
            ),
        ];
        for (did, url) in cases {
            assert_eq!(document_url(did).unwrap(), url, "{did}");
        }
        for bad in [
            "did:web:",
            "did:key:z6Mk",
            "did:web:example.com:..:etc",
            "did:web:exa mple.com",
            "did:web:example.com/x",
            "did:web:user@example.com",
        ] {
            assert!(document_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_are_read_from_multikey_and_jwk_methods() {
        let ed = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]).verifying_key();
        let p256 = p256::ecdsa::SigningKey::from_slice(&[5u8; 32])
            .unwrap()
            .verifying_key()
            .to_sec1_point(false);
        let (x, y) = (&p256.as_bytes()[1..33], &p256.as_bytes()[33..]);
        let did = "did:web:example.com";
        let doc = json!({
            "id": did,
            "verificationMethod": [
                {
                    "id": "#ed",
                    "type": "Multikey",
                    "publicKeyMultibase": multikey::encode(multikey::Codec::Ed25519, ed.as_bytes()),
                },
                {
                    "id": format!("{did}#p256"),
                    "type": "JsonWebKey2020",
                    "publicKeyJwk": {
                        "kty": "EC", "crv": "P-256",
                        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
                    },
                },
                { "id": "#odd", "type": "Unknown", "publicKeyBase58": "abc" },
            ],
        });
        let resolved = from_document(did, &doc).unwrap();
        assert_eq!(resolved.signing.len(), 2);
        assert_eq!(
            resolved.signing_key(&format!("{did}#ed")).unwrap().public,
            PublicKey::Ed25519(ed)
        );
        assert_eq!(
            resolved
                .signing_key(&format!("{did}#p256"))
                .unwrap()
                .public
                .key_type(),
            KeyType::P256
        );
        let other = json!({ "id": "did:web:evil.example", "verificationMethod": doc["verificationMethod"] });
        assert!(from_document(did, &other).is_err());
    }
}
