//! DIDs: create and resolve `did:key` (Ed25519, secp256k1, P-256) and
//! `did:peer:2`, offline; read a fetched `did:web` document ([`web`]).
//!
//! Resolution yields the few facts the agent acts on (signing key,
//! key-agreement key, DIDComm endpoint) plus a DID document for display.

mod key;
mod multikey;
mod peer;
pub mod web;

use std::collections::HashMap;
use std::sync::Arc;

pub use key::did_key;
pub use peer::create_peer2;

use serde_json::{Value, json};

use crate::crypto::PublicKey;

/// Why a DID or DID URL could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DidError {
    #[error("unsupported DID method in `{0}` (did:key and did:peer:2 are supported)")]
    UnsupportedMethod(String),
    #[error("malformed DID `{did}`: {reason}")]
    Malformed { did: String, reason: String },
    #[error("DID `{did}` has no key `{kid}`")]
    UnknownKey { did: String, kid: String },
}

/// How much of a DID an error repeats: DIDs come from peers, and an error
/// must not echo an arbitrarily long one.
const SHOWN: usize = 96;

impl DidError {
    fn malformed(did: &str, reason: impl Into<String>) -> Self {
        DidError::Malformed {
            did: crate::error::clip(did, SHOWN),
            reason: reason.into(),
        }
    }

    fn unknown_key(did: &str, kid: &str) -> Self {
        DidError::UnknownKey {
            did: crate::error::clip(did, SHOWN),
            kid: crate::error::clip(kid, SHOWN),
        }
    }
}

/// Hard bounds on what the resolver will look at. The DIDComm endpoint
/// applies tighter, configurable ones (`didcomm.max_did_bytes`) before a
/// peer's DID gets here; these protect every other caller.
pub const MAX_DID_BYTES: usize = 8192;
const MAX_ELEMENTS: usize = 32;

/// A verification method: its full DID URL and public key, a signing key
/// ([`PublicKey`]) or a raw X25519 key-agreement key (the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationKey<K = [u8; 32]> {
    pub kid: String,
    pub public: K,
}

/// A DIDCommMessaging service entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DidCommService {
    pub uri: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routing_keys: Vec<String>,
}

/// What resolving a DID tells us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedDid {
    pub did: String,
    /// Keys for authentication / assertion.
    pub signing: Vec<VerificationKey<PublicKey>>,
    /// X25519 keys for DIDComm key agreement.
    pub agreement: Vec<VerificationKey>,
    pub services: Vec<DidCommService>,
}

impl ResolvedDid {
    /// The key-agreement key named by `kid` (a DID URL of this DID).
    pub fn agreement_key(&self, kid: &str) -> Result<&VerificationKey, DidError> {
        find_key(&self.did, &self.agreement, kid, x25519_multikey)
    }

    /// The signing key named by `kid` (a DID URL of this DID).
    pub fn signing_key(&self, kid: &str) -> Result<&VerificationKey<PublicKey>, DidError> {
        find_key(&self.did, &self.signing, kid, multikey::encode_signing)
    }

    /// Where DIDComm messages for this DID go: the first service that takes
    /// DIDComm v2 (or does not say what it takes).
    pub fn endpoint(&self) -> Option<&str> {
        self.services
            .iter()
            .find(|s| s.accept.is_empty() || s.accept.iter().any(|a| a.starts_with("didcomm/v2")))
            .map(|s| s.uri.as_str())
    }

    /// The DID document, as JSON, with Multikey verification methods.
    pub fn document(&self) -> Value {
        let method = |kid: &str, multikey: String| {
            json!({
                "id": kid,
                "type": "Multikey",
                "controller": self.did,
                "publicKeyMultibase": multikey,
            })
        };
        let signing: Vec<String> = self.signing.iter().map(|k| k.kid.clone()).collect();
        let agreement: Vec<String> = self.agreement.iter().map(|k| k.kid.clone()).collect();
        let mut vms: Vec<Value> = self
            .signing
            .iter()
            .map(|k| method(&k.kid, multikey::encode_signing(&k.public)))
            .collect();
        vms.extend(
            self.agreement
                .iter()
                .map(|k| method(&k.kid, x25519_multikey(&k.public))),
        );
        let services: Vec<Value> = self
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "id": peer::service_id(&self.did, i),
                    "type": "DIDCommMessaging",
                    "serviceEndpoint": s,
                })
            })
            .collect();
        json!({
            "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
            "id": self.did,
            "verificationMethod": vms,
            "authentication": signing,
            "assertionMethod": signing,
            "keyAgreement": agreement,
            "service": services,
        })
    }
}

/// How a peer spells the fragment of a did:peer:2 key id. Every form is
/// accepted inbound; toward a peer we spell ours the way it spelled its
/// own, since its resolver will name our keys the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KidForm {
    /// `#key-1`, `#key-2`, … by order in the DID: the current peer DID
    /// spec, peerdid-jvm 0.5 (Identus), credo-ts.
    Spec,
    /// `#` + the first 8 characters of the multibase after `z`:
    /// peerdid-python 0.5 and the agents built on it.
    Prefix8,
    /// `#` + the whole multibase without `z`: peerdid-python 0.4 and older,
    /// the SICPA didcomm demo.
    Multibase,
}

impl KidForm {
    pub fn name(self) -> &'static str {
        match self {
            KidForm::Spec => "spec",
            KidForm::Prefix8 => "prefix8",
            KidForm::Multibase => "multibase",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [KidForm::Spec, KidForm::Prefix8, KidForm::Multibase]
            .into_iter()
            .find(|f| f.name() == name)
    }
}

impl ResolvedDid {
    /// How `kid`, a key id of this DID, is spelled (Spec when unsure).
    pub fn kid_form(&self, kid: &str) -> KidForm {
        let fragment = kid.split_once('#').map_or("", |(_, f)| f);
        if !self.did.starts_with("did:peer:") || fragment.starts_with("key-") {
            KidForm::Spec
        } else if fragment.len() == multikey::PREFIX_LEN {
            KidForm::Prefix8
        } else {
            KidForm::Multibase
        }
    }

    /// The id of the first key-agreement key, spelled in `form` (did:key
    /// ids have one spelling).
    pub fn agreement_kid(&self, form: KidForm) -> Option<String> {
        let key = self.agreement.first()?;
        if !self.did.starts_with("did:peer:") {
            return Some(key.kid.clone());
        }
        let mb = x25519_multikey(&key.public);
        Some(match form {
            KidForm::Spec => key.kid.clone(),
            KidForm::Prefix8 => format!("{}#{}", self.did, &mb[1..=multikey::PREFIX_LEN]),
            KidForm::Multibase => format!("{}#{}", self.did, &mb[1..]),
        })
    }
}

fn x25519_multikey(public: &[u8; 32]) -> String {
    multikey::encode(multikey::Codec::X25519, public)
}

/// Accepts the full DID URL, or a bare fragment, or the key's multibase
/// (`multikey` of it) as fragment: whole, without its `z`, or its first 8
/// characters after the `z` (see [`KidForm`]).
fn find_key<'a, K>(
    did: &str,
    keys: &'a [VerificationKey<K>],
    kid: &str,
    multikey: impl Fn(&K) -> String,
) -> Result<&'a VerificationKey<K>, DidError> {
    let unknown = || DidError::unknown_key(did, kid);
    let (kid_did, fragment) = kid.split_once('#').ok_or_else(unknown)?;
    if !kid_did.is_empty() && kid_did != did {
        return Err(unknown());
    }
    keys.iter()
        .find(|k| {
            let own = k.kid.split_once('#').map(|(_, f)| f).unwrap_or_default();
            own == fragment || multikey::matches_fragment(&multikey(&k.public), fragment)
        })
        .ok_or_else(unknown)
}

/// How many bytes of resolved DIDs are kept; past it the cache starts over.
/// A did:peer:2 document repeats its DID in every key id, so its size is
/// counted, not the number of entries.
const CACHE_BYTES: usize = 16 << 20;

#[derive(Default)]
struct Cache {
    entries: HashMap<String, Arc<ResolvedDid>>,
    bytes: usize,
}

static CACHE: std::sync::LazyLock<std::sync::Mutex<Cache>> =
    std::sync::LazyLock::new(Default::default);

impl ResolvedDid {
    /// About how much memory this takes.
    fn weight(&self) -> usize {
        let keys = self.signing.len() + self.agreement.len();
        let services: usize = self.services.iter().map(|s| s.uri.len() + 64).sum();
        self.did.len() * (2 + keys) + 64 * keys + services
    }
}

/// Resolves a did:key or did:peer:2 (a DID URL's fragment and query are ignored).
/// Both methods derive the document from the DID itself, so a resolved DID
/// never changes and is cached (every pack and unpack resolves two), and
/// shared rather than copied.
pub fn resolve(did_url: &str) -> Result<Arc<ResolvedDid>, DidError> {
    let did = did_of(did_url);
    if did.len() > MAX_DID_BYTES {
        return Err(DidError::malformed(
            did,
            format!(
                "{} bytes, over the {MAX_DID_BYTES} this resolver reads",
                did.len()
            ),
        ));
    }
    let cache = || CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(hit) = cache().entries.get(did) {
        return Ok(hit.clone());
    }
    let resolved = Arc::new(resolve_uncached(did)?);
    let weight = resolved.weight();
    let mut cache = cache();
    if cache.bytes + weight > CACHE_BYTES {
        cache.entries.clear();
        cache.bytes = 0;
    }
    if cache
        .entries
        .insert(did.to_string(), resolved.clone())
        .is_none()
    {
        cache.bytes += weight;
    }
    Ok(resolved)
}

fn resolve_uncached(did: &str) -> Result<ResolvedDid, DidError> {
    if did.starts_with("did:key:") {
        key::resolve(did)
    } else if did.starts_with("did:peer:2") {
        peer::resolve(did)
    } else {
        Err(DidError::UnsupportedMethod(crate::error::clip(did, SHOWN)))
    }
}

/// The DID part of a DID URL.
pub fn did_of(did_url: &str) -> &str {
    did_url.split(['#', '?']).next().unwrap_or(did_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_key_accepts_the_common_kid_spellings() {
        let public = [7u8; 32];
        let mb = multikey::encode(multikey::Codec::X25519, &public);
        let did = "did:example:x".to_string();
        let resolved = ResolvedDid {
            did: did.clone(),
            signing: vec![],
            agreement: vec![VerificationKey {
                kid: format!("{did}#key-2"),
                public,
            }],
            services: vec![],
        };
        for kid in [
            format!("{did}#key-2"),
            "#key-2".to_string(),
            format!("{did}#{mb}"),
            format!("{did}#{}", &mb[1..]),
            format!("{did}#{}", &mb[1..9]),
        ] {
            assert_eq!(
                resolved.agreement_key(&kid).unwrap().public,
                public,
                "{kid}"
            );
        }
        for kid in [
            format!("{did}#key-1"),
            "did:example:other#key-2".to_string(),
            "key-2".to_string(),
            format!("{did}#{}", &mb[1..8]),
            format!("{did}#{}", &mb[2..10]),
        ] {
            assert!(resolved.agreement_key(&kid).is_err(), "{kid}");
        }
    }

    /// peerdid-python 0.5.2's ids for the spec's example DID (its own
    /// resolver's output), and the older full-multibase form.
    #[test]
    fn every_kid_form_names_the_same_key_and_is_spelled_back() {
        let did = concat!(
            "did:peer:2.Ez6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc",
            ".Vz6MkqRYqQiSgvZQdnBytw86Qbs2ZWUkGv22od935YF4s8M7V"
        );
        let r = resolve(did).unwrap();
        for (kid, form) in [
            (format!("{did}#key-1"), KidForm::Spec),
            (format!("{did}#6LSbysY2"), KidForm::Prefix8),
            (
                format!("{did}#6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc"),
                KidForm::Multibase,
            ),
        ] {
            assert_eq!(r.agreement_key(&kid).unwrap().kid, format!("{did}#key-1"));
            assert_eq!(r.kid_form(&kid), form, "{kid}");
            assert_eq!(r.agreement_kid(form).unwrap(), kid);
            assert_eq!(KidForm::from_name(form.name()), Some(form));
        }
        assert_eq!(
            r.signing_key(&format!("{did}#6MkqRYqQ")).unwrap().kid,
            format!("{did}#key-2")
        );
        let key = resolve("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK").unwrap();
        assert_eq!(key.kid_form(&key.signing[0].kid), KidForm::Spec);
    }

    #[test]
    fn unsupported_methods_are_named() {
        let err = resolve("did:web:example.com").unwrap_err();
        assert!(matches!(err, DidError::UnsupportedMethod(_)));
        assert!(err.to_string().contains("did:web:example.com"));
    }
}
