//! did:peer:2 (DIF Peer DID Method, numalgo 2): keys and services inline.
//!
//! Elements are `.V` (authentication: we make Ed25519 keys and read any
//! signing key type did:key has), `.E` (X25519 key agreement)
//! and `.S` (base64url JSON service with abbreviated names). Key ids are
//! `#key-N` by order of appearance, services `#service`, `#service-1`, …

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

use super::multikey::{self, Codec};
use super::{DidCommService, DidError, ResolvedDid, VerificationKey};

/// A did:peer:2 with one Ed25519 `V`, one X25519 `E` (both 32 raw bytes)
/// and a DIDCommMessaging service at `endpoint` (the current abbreviated
/// form, `s` an object).
pub fn create_peer2(signing: &[u8], agreement: &[u8], endpoint: &str) -> String {
    let service = json!({"t": "dm", "s": {"uri": endpoint, "a": ["didcomm/v2"]}});
    format!(
        "did:peer:2.V{}.E{}.S{}",
        multikey::encode(Codec::Ed25519, signing),
        multikey::encode(Codec::X25519, agreement),
        URL_SAFE_NO_PAD.encode(service.to_string())
    )
}

pub(super) fn service_id(did: &str, index: usize) -> String {
    match index {
        0 => format!("{did}#service"),
        n => format!("{did}#service-{n}"),
    }
}

pub(super) fn resolve(did: &str) -> Result<ResolvedDid, DidError> {
    let elements = did
        .strip_prefix("did:peer:2.")
        .ok_or_else(|| DidError::malformed(did, "expected `did:peer:2.` followed by elements"))?;
    let mut resolved = ResolvedDid {
        did: did.to_string(),
        signing: vec![],
        agreement: vec![],
        services: vec![],
    };
    if elements.split('.').count() > super::MAX_ELEMENTS {
        return Err(DidError::malformed(
            did,
            format!("more than {} elements", super::MAX_ELEMENTS),
        ));
    }
    let mut key_index = 0;
    for element in elements.split('.') {
        let mut chars = element.chars();
        let purpose = chars.next();
        let value = chars.as_str();
        match purpose {
            Some('V') | Some('E') => {
                key_index += 1;
                let kid = format!("{did}#key-{key_index}");
                if purpose == Some('V') {
                    let public = multikey::decode_signing(did, value)?;
                    resolved.signing.push(VerificationKey { kid, public });
                } else {
                    let public = multikey::decode_x25519(did, value)?;
                    resolved.agreement.push(VerificationKey { kid, public });
                }
            }
            Some('S') => resolved.services.extend(decode_services(did, value)?),
            // A, I and D purposes carry keys we have no use for; other letters are errors.
            Some('A') | Some('I') | Some('D') => key_index += 1,
            _ => {
                let element = crate::error::clip(element, 16);
                return Err(DidError::malformed(did, format!("bad element `{element}`")));
            }
        }
    }
    if resolved.signing.is_empty() && resolved.agreement.is_empty() {
        return Err(DidError::malformed(did, "no keys"));
    }
    Ok(resolved)
}

/// Service types that carry DIDComm: the v2 name, its abbreviation, and
/// the older `did-communication` some agents still put in peer DIDs.
const DIDCOMM_TYPES: [&str; 3] = ["dm", "DIDCommMessaging", "did-communication"];

/// Reads the `.S` element: one service or an array; each abbreviated or
/// not, at the top level only (peerdid-python 0.5) or nested too (the
/// spec); `serviceEndpoint` a URI string (DIDComm v2.0, with `accept` and
/// `routingKeys` beside it), an object `{uri, accept, routingKeys}` (v2.1),
/// or an array of either. Services of other types are skipped.
fn decode_services(did: &str, encoded: &str) -> Result<Vec<DidCommService>, DidError> {
    let bad = |why: &str| DidError::malformed(did, format!("service: {why}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .or_else(|_| URL_SAFE.decode(encoded))
        .map_err(|_| bad("not base64url"))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad("not JSON"))?;
    let entries = match value {
        Value::Array(entries) => entries,
        single => vec![single],
    };
    let mut services = Vec::new();
    for entry in &entries {
        let entry = entry.as_object().ok_or_else(|| bad("not an object"))?;
        let t = field(entry, "t", "type").and_then(Value::as_str);
        if !t.is_some_and(|t| DIDCOMM_TYPES.contains(&t)) {
            continue;
        }
        let endpoints = match field(entry, "s", "serviceEndpoint") {
            Some(Value::Array(all)) => all.iter().collect(),
            Some(one) => vec![one],
            None => return Err(bad("no serviceEndpoint")),
        };
        for endpoint in endpoints {
            let (uri, fields) = match endpoint {
                Value::String(uri) => (uri.as_str(), entry),
                Value::Object(s) => (
                    s.get("uri")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad("no uri"))?,
                    s,
                ),
                _ => return Err(bad("serviceEndpoint is neither a URI nor an object")),
            };
            let strings = |short: &str, long: &str| -> Vec<String> {
                field(fields, short, long)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            services.push(DidCommService {
                uri: uri.to_string(),
                accept: strings("a", "accept"),
                routing_keys: strings("r", "routingKeys"),
            });
        }
    }
    Ok(services)
}

/// A service field under its abbreviated or its full name.
fn field<'a>(entry: &'a Map<String, Value>, short: &str, long: &str) -> Option<&'a Value> {
    entry.get(short).or_else(|| entry.get(long))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numalgo 2 example of the DIF peer DID spec and its reference
    /// resolvers (peer-did-python/-jvm/-dotnet fixtures).
    const SPEC_DID: &str = concat!(
        "did:peer:2.Ez6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc",
        ".Vz6MkqRYqQiSgvZQdnBytw86Qbs2ZWUkGv22od935YF4s8M7V",
        ".Vz6MkgoLTnTypo3tDRwCkZXSccTPHRLhF4ZnjhueYAFpEX6vg",
        ".SeyJ0IjoiZG0iLCJzIjoiaHR0cHM6Ly9leGFtcGxlLmNvbS9lbmRwb2ludCIsInIiOlsiZGlkOmV4YW1wbGU6c29tZW1lZGlhdG9yI3NvbWVrZXkiXSwiYSI6WyJkaWRjb21tL3YyIiwiZGlkY29tbS9haXAyO2Vudj1yZmM1ODciXX0"
    );

    #[test]
    fn resolves_the_spec_example() {
        let r = super::super::resolve(SPEC_DID).unwrap();
        assert_eq!(r.agreement.len(), 1);
        assert_eq!(r.agreement[0].kid, format!("{SPEC_DID}#key-1"));
        assert_eq!(
            multikey::encode(Codec::X25519, &r.agreement[0].public),
            "z6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc"
        );
        let kids: Vec<_> = r.signing.iter().map(|k| k.kid.clone()).collect();
        assert_eq!(
            kids,
            [format!("{SPEC_DID}#key-2"), format!("{SPEC_DID}#key-3")]
        );
        assert_eq!(
            r.services,
            [DidCommService {
                uri: "https://example.com/endpoint".into(),
                accept: vec!["didcomm/v2".into(), "didcomm/aip2;env=rfc587".into()],
                routing_keys: vec!["did:example:somemediator#somekey".into()],
            }]
        );
        let doc = r.document();
        assert_eq!(doc["service"][0]["id"], format!("{SPEC_DID}#service"));
    }

    #[test]
    fn create_then_resolve_round_trips() {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[3; 32])
            .verifying_key()
            .to_bytes();
        let agreement = [9u8; 32];
        let did = create_peer2(&signing, &agreement, "http://127.0.0.1:9/didcomm");
        let r = super::super::resolve(&did).unwrap();
        assert_eq!(r.signing[0].public.to_bytes(), signing);
        assert_eq!(r.signing[0].kid, format!("{did}#key-1"));
        assert_eq!(r.agreement[0].public, agreement);
        assert_eq!(r.agreement[0].kid, format!("{did}#key-2"));
        assert_eq!(r.endpoint(), Some("http://127.0.0.1:9/didcomm"));
        assert_eq!(r.services[0].accept, ["didcomm/v2"]);
    }

    /// Every service shape peers put in did:peer:2 (credo-ts #1789,
    /// identus cloud-agent #876, peerdid-python 0.5) resolves to the same
    /// endpoint; other service types are skipped.
    #[test]
    fn every_service_shape_is_read() {
        let key = "Ez6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc";
        let uri = "https://peer.example/didcomm";
        let v21 = json!({"uri": uri, "accept": ["didcomm/v2"], "routingKeys": []});
        for (name, service) in [
            (
                "v2.1 abbreviated",
                json!({"t": "dm", "s": {"uri": uri, "a": ["didcomm/v2"]}}),
            ),
            (
                "v2.1, nested names in full (peerdid-python 0.5)",
                json!({"t": "dm", "s": v21}),
            ),
            (
                "v2.1 unabbreviated",
                json!({"type": "DIDCommMessaging", "serviceEndpoint": v21}),
            ),
            (
                "v2.0 flat",
                json!({"t": "dm", "s": uri, "a": ["didcomm/v2"], "r": []}),
            ),
            (
                "did-communication",
                json!({"type": "did-communication", "serviceEndpoint": uri, "accept": ["didcomm/v2"]}),
            ),
            (
                "endpoint array",
                json!({"t": "dm", "s": [{"uri": uri, "a": ["didcomm/v2"]}]}),
            ),
            (
                "two services",
                json!([{"t": "LinkedDomains", "s": "https://x.example"}, {"t": "dm", "s": {"uri": uri, "a": ["didcomm/v2"]}}]),
            ),
        ] {
            let did = format!(
                "did:peer:2.{key}.S{}",
                URL_SAFE_NO_PAD.encode(service.to_string())
            );
            let r = super::super::resolve(&did).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(r.endpoint(), Some(uri), "{name}");
            assert_eq!(r.services[0].accept, ["didcomm/v2"], "{name}");
        }
        let two = format!(
            "did:peer:2.{key}.S{}.S{}",
            URL_SAFE_NO_PAD.encode(json!({"t": "dm", "s": "https://a.example"}).to_string()),
            URL_SAFE_NO_PAD.encode(json!({"t": "dm", "s": "https://b.example"}).to_string()),
        );
        let r = super::super::resolve(&two).unwrap();
        assert_eq!(r.services.len(), 2);
        assert_eq!(r.endpoint(), Some("https://a.example"));
    }

    #[test]
    fn malformed_peer_dids_are_rejected() {
        for did in [
            "did:peer:2",
            "did:peer:2.",
            "did:peer:2.Xz6Mkq",
            "did:peer:2.Vz6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc",
            "did:peer:2.Ez6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc.S!!!",
            "did:peer:2.Ez6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc.SeyJ0IjoiZG0ifQ",
        ] {
            assert!(
                matches!(super::super::resolve(did), Err(DidError::Malformed { .. })),
                "{did}"
            );
        }
    }
}
