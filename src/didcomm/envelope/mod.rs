//! DIDComm v2.1 envelopes: we pack authcrypt (ECDH-1PU+A256KW,
//! A256CBC-HS512) with the keys of our wallets; `open.rs` opens what the
//! network sends, cheapest checks first.

mod open;

pub use open::Inspected;

use affinidi_crypto::jose::key_agreement::{Curve, PublicKeyAgreement};
use affinidi_messaging_didcomm::DIDCommError;
use affinidi_messaging_didcomm::jwe::encrypt;

use super::Message;
use crate::config::Limits;
use crate::crypto::KeyStore;
use crate::did::{self, DidError, KidForm};
use crate::error::{Error, Result};
use crate::store::{DidRecord, Store};

/// Why an envelope was refused. Each maps to a 4xx on `POST /didcomm`.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("a signed message must be encrypted as well (authcrypt) to be accepted here")]
    NotEncrypted,
    #[error("anonymous (anoncrypt) messages are not accepted: no protocol here takes them")]
    Anonymous,
    #[error("not a peer of ours: {0}")]
    NotAPeer(String),
    #[error("over a limit: {0}")]
    Limit(String),
    #[error("message created at {0}, before the replay window (didcomm.limits.replay_window_secs)")]
    Stale(u64),
    #[error("message created at {0}, in the future (didcomm.limits.clock_skew_secs)")]
    FromTheFuture(u64),
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
    /// The sender DID, proven by authcrypt (and signature, if signed).
    pub sender: Option<String>,
}

/// Packs and unpacks with the keys in our key store.
#[derive(Clone)]
pub struct Envelopes {
    keys: KeyStore,
    store: Store,
    limits: Limits,
    kid_forms: KidForms,
}

/// How each peer spells did:peer:2 key ids, learnt from its `skid`: in
/// memory for everyone who got a message through, on disk for connected
/// peers only (nothing is stored for strangers).
#[derive(Clone, Default)]
struct KidForms(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, KidForm>>>);

/// Past this many peers the memory map starts over (the disk keeps them).
const MAX_KID_FORMS: usize = 10_000;

impl KidForms {
    fn get(&self, peer: &str) -> Option<KidForm> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(peer)
            .copied()
    }

    /// Remembers `form`; true when it is news.
    fn learn(&self, peer: &str, form: KidForm) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(peer) == Some(&form) {
            return false;
        }
        if map.len() >= MAX_KID_FORMS {
            map.clear();
        }
        map.insert(peer.to_string(), form);
        true
    }
}

fn x25519(public: &[u8; 32]) -> PublicKeyAgreement {
    PublicKeyAgreement::from_raw_bytes(Curve::X25519, public).expect("32 bytes is an X25519 key")
}

/// The first key-agreement key of the recipient DID `to`, its id spelled
/// in `form`.
fn recipient_key(to: &str, form: KidForm) -> Result<(String, PublicKeyAgreement)> {
    let theirs = did::resolve(to)?;
    let no_key = || Error::InvalidArgument(format!("{to} has no key-agreement key"));
    let key = theirs.agreement.first().ok_or_else(no_key)?;
    let kid = theirs.agreement_kid(form).ok_or_else(no_key)?;
    Ok((kid, x25519(&key.public)))
}

fn lib_err(e: DIDCommError) -> Error {
    Error::Internal(format!("DIDComm: {e}"))
}

impl Envelopes {
    pub fn new(keys: KeyStore, store: Store, limits: Limits) -> Self {
        Envelopes {
            keys,
            store,
            limits,
            kid_forms: KidForms::default(),
        }
    }

    /// How `peer` spells key ids: as it last did, else the spec's way.
    fn kid_form(&self, peer: &str) -> KidForm {
        self.kid_forms.get(peer).unwrap_or_else(|| {
            let stored = self.store.peer_kid_form(peer).ok().flatten();
            let form = stored
                .as_deref()
                .and_then(KidForm::from_name)
                .unwrap_or(KidForm::Spec);
            self.kid_forms.learn(peer, form);
            form
        })
    }

    /// Notes how the sender of an opened envelope spells key ids; on disk
    /// once it is a connected peer, and only when that changes something.
    fn learn_kid_form(&self, sender: &did::ResolvedDid, skid: &str, connected: bool) {
        let form = sender.kid_form(skid);
        let news = self.kid_forms.learn(&sender.did, form);
        if !connected || (!news && form == KidForm::Spec) {
            return;
        }
        let stored = self.store.peer_kid_form(&sender.did).ok().flatten();
        let unchanged = match stored.as_deref() {
            Some(name) => name == form.name(),
            None => form == KidForm::Spec,
        };
        if !unchanged && let Err(e) = self.store.set_peer_kid_form(&sender.did, form.name()) {
            tracing::warn!(error = %e, "could not record a peer's key id form");
        }
    }

    /// Authcrypt (ECDH-1PU+A256KW, A256CBC-HS512) from our DID `from` to `to`.
    pub fn pack_authcrypt(&self, from: &DidRecord, to: &str, msg: &Message) -> Result<String> {
        self.authcrypt(from, to, msg.to_json().as_bytes())
    }

    fn authcrypt(&self, from: &DidRecord, to: &str, plaintext: &[u8]) -> Result<String> {
        let form = self.kid_form(to);
        let ours = did::resolve(&from.did)?;
        let sender_kid = ours
            .agreement_kid(form)
            .ok_or_else(|| Error::Internal(format!("{} has no key-agreement key", from.did)))?;
        let private = self
            .keys
            .agreement_secret(&from.wallet_id, &from.agreement_key_id)?;
        let (kid, public) = recipient_key(to, form)?;
        encrypt::authcrypt(plaintext, &sender_kid, &private, &[(kid.as_str(), &public)])
            .map_err(lib_err)
    }

    /// Anoncrypt (ECDH-ES+A256KW, A256CBC-HS512) to `to`: only tests send
    /// it (to see it refused).
    #[cfg(test)]
    pub fn pack_anoncrypt(&self, to: &str, msg: &Message) -> Result<String> {
        let (kid, public) = recipient_key(to, KidForm::Spec)?;
        encrypt::anoncrypt(msg.to_json().as_bytes(), &[(kid.as_str(), &public)]).map_err(lib_err)
    }

    /// A JWS (EdDSA) signed by our DID `from`, authcrypted from `by` to
    /// `to` when `by` is given: tests send both.
    #[cfg(test)]
    pub fn pack_signed(
        &self,
        from: &DidRecord,
        by: Option<&DidRecord>,
        to: &str,
        msg: &Message,
    ) -> Result<String> {
        let ours = did::resolve(&from.did)?;
        let secret = self
            .keys
            .signing_secret(&from.wallet_id, &from.signing_key_id)?;
        let jws = affinidi_messaging_didcomm::jws::sign::sign_ed25519(
            msg.to_json().as_bytes(),
            &ours.signing[0].kid,
            &secret,
        )
        .map_err(lib_err)?;
        match by {
            Some(by) => self.authcrypt(by, to, jws.as_bytes()),
            None => Ok(jws),
        }
    }
}

#[cfg(test)]
mod tests;
