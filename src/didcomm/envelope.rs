//! Pack and unpack DIDComm v2.1 envelopes (authcrypt, anoncrypt, signed) with
//! the keys of our wallets and the offline did:key / did:peer resolver.

use affinidi_crypto::jose::key_agreement::{Curve, PublicKeyAgreement};
use affinidi_messaging_didcomm::jwe::{decrypt, encrypt};
use affinidi_messaging_didcomm::jws::{sign, verify};
use affinidi_messaging_didcomm::{DIDCommError, SenderKey};
use serde_json::Value;

use super::Message;
use crate::crypto::KeyStore;
use crate::did::{self, DidError};
use crate::error::{Error, Result};
use crate::store::{DidRecord, Store};

/// Why an envelope was refused. Each maps to a 4xx on `POST /didcomm`.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("not a DIDComm envelope: {0}")]
    Malformed(String),
    #[error("no recipient of this message is a DID held here")]
    UnknownRecipient,
    #[error("sender cannot be resolved: {0}")]
    UnknownSender(DidError),
    #[error("decryption failed (tampered or not for this key): {0}")]
    Decryption(String),
    #[error("signature verification failed: {0}")]
    BadSignature(String),
    #[error("sender mismatch: {0}")]
    SenderMismatch(String),
    #[error("message is addressed to {0:?}, not to the DID it was encrypted for")]
    RecipientMismatch(Vec<String>),
    #[error("message expired at {0}")]
    Expired(u64),
    #[error("plaintext is not a DIDComm message: {0}")]
    BadPlaintext(String),
}

/// An unpacked, checked message.
#[derive(Debug)]
pub struct Unpacked {
    pub message: Message,
    /// Our DID it was encrypted to (and the wallet holding it).
    pub recipient: DidRecord,
    /// The sender DID, proven by authcrypt or signature; `None` for anoncrypt.
    pub sender: Option<String>,
}

/// Packs and unpacks with the keys in our key store.
#[derive(Clone)]
pub struct Envelopes {
    keys: KeyStore,
    store: Store,
}

fn x25519(public: &[u8; 32]) -> PublicKeyAgreement {
    PublicKeyAgreement::from_raw_bytes(Curve::X25519, public).expect("32 bytes is an X25519 key")
}

/// The first key-agreement key of the recipient DID `to`.
fn recipient_key(to: &str) -> Result<(String, PublicKeyAgreement)> {
    let theirs = did::resolve(to)?;
    let key = theirs
        .agreement
        .first()
        .ok_or_else(|| Error::InvalidArgument(format!("{to} has no key-agreement key")))?;
    Ok((key.kid.clone(), x25519(&key.public)))
}

fn lib_err(e: DIDCommError) -> Error {
    Error::Internal(format!("DIDComm: {e}"))
}

impl Envelopes {
    pub fn new(keys: KeyStore, store: Store) -> Self {
        Envelopes { keys, store }
    }

    /// Authcrypt (ECDH-1PU+A256KW, A256CBC-HS512) from our DID `from` to `to`.
    pub fn pack_authcrypt(&self, from: &DidRecord, to: &str, msg: &Message) -> Result<String> {
        let ours = did::resolve(&from.did)?;
        let sender_kid = &ours.agreement[0].kid;
        let private = self
            .keys
            .agreement_secret(&from.wallet_id, &from.agreement_key_id)?;
        let (kid, public) = recipient_key(to)?;
        encrypt::authcrypt(
            msg.to_json().as_bytes(),
            sender_kid,
            &private,
            &[(kid.as_str(), &public)],
        )
        .map_err(lib_err)
    }

    /// Anoncrypt (ECDH-ES+A256KW, A256CBC-HS512) to `to`.
    pub fn pack_anoncrypt(&self, to: &str, msg: &Message) -> Result<String> {
        let (kid, public) = recipient_key(to)?;
        encrypt::anoncrypt(msg.to_json().as_bytes(), &[(kid.as_str(), &public)]).map_err(lib_err)
    }

    /// A JWS (EdDSA) signed by our DID `from`.
    pub fn pack_signed(&self, from: &DidRecord, msg: &Message) -> Result<String> {
        let ours = did::resolve(&from.did)?;
        let secret = self
            .keys
            .signing_secret(&from.wallet_id, &from.signing_key_id)?;
        sign::sign_ed25519(msg.to_json().as_bytes(), &ours.signing[0].kid, &secret).map_err(lib_err)
    }

    /// Opens an encrypted or signed envelope addressed to one of our DIDs and
    /// checks sender and recipient binding and expiry.
    pub fn unpack(&self, packed: &[u8]) -> Result<Unpacked, EnvelopeError> {
        let text =
            std::str::from_utf8(packed).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
        let value: Value =
            serde_json::from_str(text).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
        if value.get("ciphertext").is_some() && value.get("recipients").is_some() {
            self.unpack_jwe(text, &value)
        } else if value.get("payload").is_some() && value.get("signatures").is_some() {
            let (message, signer) = verify_jws(text)?;
            let recipient = message
                .to
                .iter()
                .find_map(|to| self.store.did_owner(to).ok().flatten())
                .ok_or(EnvelopeError::UnknownRecipient)?;
            finish(message, recipient, Some(signer))
        } else {
            Err(EnvelopeError::Malformed(
                "neither a JWE (ciphertext, recipients) nor a JWS (payload, signatures)".into(),
            ))
        }
    }

    fn unpack_jwe(&self, text: &str, value: &Value) -> Result<Unpacked, EnvelopeError> {
        let kids = value["recipients"]
            .as_array()
            .ok_or_else(|| EnvelopeError::Malformed("recipients is not an array".into()))?
            .iter()
            .filter_map(|r| r["header"]["kid"].as_str());
        let (kid, recipient) = kids
            .filter_map(|kid| {
                let rec = self.store.did_owner(did::did_of(kid)).ok().flatten()?;
                let resolved = did::resolve(&rec.did).ok()?;
                resolved.agreement_key(kid).ok()?;
                Some((kid.to_string(), rec))
            })
            .next()
            .ok_or(EnvelopeError::UnknownRecipient)?;
        let private = self
            .keys
            .agreement_secret(&recipient.wallet_id, &recipient.agreement_key_id)
            .map_err(|e| EnvelopeError::Decryption(e.to_string()))?;

        let skid = decrypt::authcrypt_sender_kid(text)
            .map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        let sender_public = match &skid {
            Some(skid) => {
                let resolved = did::resolve(skid).map_err(EnvelopeError::UnknownSender)?;
                let key = resolved
                    .agreement_key(skid)
                    .map_err(EnvelopeError::UnknownSender)?;
                Some(x25519(&key.public))
            }
            None => None,
        };
        let sender_key = skid
            .as_deref()
            .zip(sender_public.as_ref())
            .map(|(kid, public)| SenderKey::new(kid, public));
        let decrypted = decrypt::decrypt_bound(text, &kid, &private, sender_key)
            .map_err(|e| EnvelopeError::Decryption(e.to_string()))?;

        let inner: Value = serde_json::from_slice(&decrypted.plaintext)
            .map_err(|e| EnvelopeError::BadPlaintext(e.to_string()))?;
        let (message, signer) =
            if inner.get("payload").is_some() && inner.get("signatures").is_some() {
                let jws = std::str::from_utf8(&decrypted.plaintext)
                    .map_err(|e| EnvelopeError::BadPlaintext(e.to_string()))?;
                let (m, signer) = verify_jws(jws)?;
                (m, Some(signer))
            } else {
                let m: Message = serde_json::from_value(inner)
                    .map_err(|e| EnvelopeError::BadPlaintext(e.to_string()))?;
                (m, None)
            };
        let skid_did = skid.as_deref().map(|s| did::did_of(s).to_string());
        if let (Some(a), Some(b)) = (&skid_did, &signer)
            && a != b
        {
            return Err(EnvelopeError::SenderMismatch(format!(
                "encrypted by {a} but signed by {b}"
            )));
        }
        finish(message, recipient, skid_did.or(signer))
    }
}

/// Checks that bind the plaintext to its envelope: the authenticated sender
/// is the `from`, the recipient is in `to`, and the message has not expired.
fn finish(
    message: Message,
    recipient: DidRecord,
    sender: Option<String>,
) -> Result<Unpacked, EnvelopeError> {
    if let Some(sender) = &sender
        && message.from.as_deref() != Some(sender.as_str())
    {
        return Err(EnvelopeError::SenderMismatch(format!(
            "`from` is {:?} but the envelope was made by {sender}",
            message.from
        )));
    }
    if !message.to.is_empty() && !message.to.iter().any(|t| did::did_of(t) == recipient.did) {
        return Err(EnvelopeError::RecipientMismatch(message.to));
    }
    if let Some(expires) = message.expires_time
        && expires < crate::now_secs()
    {
        return Err(EnvelopeError::Expired(expires));
    }
    if message.id.is_empty() || message.typ.is_empty() {
        return Err(EnvelopeError::BadPlaintext("empty id or type".into()));
    }
    Ok(Unpacked {
        message,
        recipient,
        sender,
    })
}

/// Verifies a JWS by its first signature's key; returns the message and signer DID.
fn verify_jws(jws: &str) -> Result<(Message, String), EnvelopeError> {
    let parsed = verify::parse_jws(jws).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    let sig = parsed
        .signatures
        .first()
        .ok_or_else(|| EnvelopeError::Malformed("JWS has no signature".into()))?;
    let kid = sig
        .kid
        .as_deref()
        .ok_or_else(|| EnvelopeError::Malformed("JWS signature has no kid".into()))?;
    let resolved = did::resolve(kid).map_err(EnvelopeError::UnknownSender)?;
    let key = resolved
        .signing_key(kid)
        .map_err(EnvelopeError::UnknownSender)?;
    verify::verify_parsed_signature(sig, &verify::VerifyKey::Ed25519(key.public))
        .map_err(|e| EnvelopeError::BadSignature(e.to_string()))?;
    let message: Message = serde_json::from_slice(&parsed.payload)
        .map_err(|e| EnvelopeError::BadPlaintext(e.to_string()))?;
    Ok((message, resolved.did.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::store::DidMethod;
    use proptest::prelude::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        envelopes: Envelopes,
        alice: DidRecord,
        bob: DidRecord,
    }

    fn peer_did(keys: &KeyStore, store: &Store, wallet: &str) -> DidRecord {
        let new = crate::wallet::new_did(
            keys,
            "http://127.0.0.1:9/didcomm",
            wallet,
            DidMethod::Peer2,
            "test",
        );
        store
            .transact(|tx| crate::wallet::put_did(tx, &new))
            .unwrap();
        new.record
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let keys = KeyStore::open(MasterKey::from_bytes([5; 32]), store.clone()).unwrap();
        let alice = peer_did(&keys, &store, "a");
        let bob = peer_did(&keys, &store, "b");
        Fixture {
            _dir: dir,
            envelopes: Envelopes::new(keys, store),
            alice,
            bob,
        }
    }

    fn hello(f: &Fixture) -> Message {
        let mut m = Message::new(
            "https://didcomm.org/basicmessage/2.0/message",
            serde_json::json!({"content": "hi"}),
        );
        m.from = Some(f.alice.did.clone());
        m.to = vec![f.bob.did.clone()];
        m
    }

    #[test]
    fn authcrypt_anoncrypt_and_signed_round_trip() {
        let f = fixture();
        let m = hello(&f);
        let u = f
            .envelopes
            .unpack(
                f.envelopes
                    .pack_authcrypt(&f.alice, &f.bob.did, &m)
                    .unwrap()
                    .as_bytes(),
            )
            .unwrap();
        assert_eq!(u.message, m);
        assert_eq!(u.sender.as_deref(), Some(f.alice.did.as_str()));
        assert_eq!(u.recipient.did, f.bob.did);

        let mut anon = m.clone();
        anon.from = None;
        let u = f
            .envelopes
            .unpack(
                f.envelopes
                    .pack_anoncrypt(&f.bob.did, &anon)
                    .unwrap()
                    .as_bytes(),
            )
            .unwrap();
        assert_eq!(u.sender, None);
        assert_eq!(u.message, anon);

        let u = f
            .envelopes
            .unpack(f.envelopes.pack_signed(&f.alice, &m).unwrap().as_bytes())
            .unwrap();
        assert_eq!(u.sender.as_deref(), Some(f.alice.did.as_str()));
        assert_eq!(u.message, m);
    }

    #[test]
    fn a_signature_by_another_key_is_refused() {
        let f = fixture();
        let mut m = hello(&f);
        // Bob signs a message that claims to be from Alice.
        let jws = f.envelopes.pack_signed(&f.bob, &m).unwrap();
        assert!(matches!(
            f.envelopes.unpack(jws.as_bytes()),
            Err(EnvelopeError::SenderMismatch(_))
        ));
        // A JWS whose kid names Alice but was signed by Bob.
        m.from = Some(f.alice.did.clone());
        let mut v: Value =
            serde_json::from_str(&f.envelopes.pack_signed(&f.bob, &m).unwrap()).unwrap();
        let alice_kid = did::resolve(&f.alice.did).unwrap().signing[0].kid.clone();
        v["signatures"][0]["header"]["kid"] = Value::String(alice_kid);
        assert!(f.envelopes.unpack(v.to_string().as_bytes()).is_err());
    }

    /// Flips, truncations and splices of a valid envelope, and random bytes:
    /// unpack never panics; it refuses, or (for a change that leaves the
    /// envelope intact) yields the original message.
    fn check_mutant(f: &Fixture, original: &Message, bytes: &[u8]) {
        match f.envelopes.unpack(bytes) {
            Err(_) => {}
            Ok(u) => assert_eq!(&u.message, original),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn mutated_envelopes_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let f = FIXTURE.with(|f| f.clone());
            let (fx, original, packed) = &*f;
            let mut bytes = packed.as_bytes().to_vec();
            for (i, b) in flips {
                let i = i.index(bytes.len());
                bytes[i] ^= b | 1;
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len()));
            }
            check_mutant(fx, original, &bytes);
        }

        #[test]
        fn random_json_fields_never_panic(field in "(protected|recipients|iv|ciphertext|tag|header|kid|payload|signatures)", value in any::<String>()) {
            let f = FIXTURE.with(|f| f.clone());
            let (fx, original, packed) = &*f;
            let mut v: Value = serde_json::from_str(packed).unwrap();
            v[field.as_str()] = Value::String(value);
            check_mutant(fx, original, v.to_string().as_bytes());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let f = FIXTURE.with(|f| f.clone());
            prop_assert!(f.0.envelopes.unpack(&bytes).is_err());
        }
    }

    thread_local! {
        static FIXTURE: std::rc::Rc<(Fixture, Message, String)> = {
            let f = fixture();
            let m = hello(&f);
            let packed = f.envelopes.pack_authcrypt(&f.alice, &f.bob.did, &m).unwrap();
            std::rc::Rc::new((f, m, packed))
        };
    }
}
