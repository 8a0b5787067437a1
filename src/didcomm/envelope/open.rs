//! Opening an envelope from the network, cheapest checks first. Every
//! byte here is a stranger's until the sender is proven, so:
//!
//! 1. sizes and counts of the envelope (recipients, key ids) are checked
//!    before anything is looked up;
//! 2. our recipient is found by a store lookup per key id (no resolution);
//! 3. the sender must be the peer of the connection that uses that DID of
//!    ours, or, while the invitation behind it is still open, anyone
//!    answering it (`NotAPeer` otherwise): decided before the sender's DID
//!    is resolved or anything is decrypted;
//! 4. only then ([`Envelopes::open`]) the sender's DID is resolved
//!    (bounded in size) and the message decrypted (the caller runs both
//!    steps off the async workers, and strangers' envelopes a few at a
//!    time);
//! 5. the plaintext is bound to the envelope (`from`, `to`) and its ids,
//!    times and counts checked.

use affinidi_messaging_didcomm::SenderKey;
use affinidi_messaging_didcomm::jwe::decrypt;
use affinidi_messaging_didcomm::jws::verify;
use axum::body::Bytes;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use super::{EnvelopeError, Envelopes, Unpacked, x25519};
use crate::config::Limits;
use crate::crypto::PublicKey;
use crate::did;
use crate::didcomm::Message;
use crate::error::clip;
use crate::store::{ConnectionState, DidRecord};

/// How much of a peer's value an error repeats.
const SHOWN: usize = 96;

fn too_big(what: &str, len: usize, max: usize) -> EnvelopeError {
    EnvelopeError::Limit(format!(
        "{what} is {len} bytes or items, over the limit of {max}"
    ))
}

/// An envelope past the cheap checks: addressed to a key of ours, from a
/// sender allowed to write to it. Not yet resolved or decrypted.
pub struct Inspected {
    packed: Bytes,
    kid: String,
    skid: String,
    recipient: DidRecord,
    /// The sender answers an open invitation of ours: it has proven nothing
    /// yet, and its envelopes are opened a few at a time.
    pub from_stranger: bool,
}

/// The parts of a JWE the cheap checks read; the rest is skipped unread
/// (not even copied).
#[derive(Deserialize)]
struct Shallow {
    protected: Option<String>,
    recipients: Option<Vec<ShallowRecipient>>,
    ciphertext: Option<IgnoredAny>,
    payload: Option<IgnoredAny>,
    signatures: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ShallowRecipient {
    header: Option<ShallowHeader>,
}

#[derive(Deserialize)]
struct ShallowHeader {
    kid: Option<String>,
}

/// A protected header larger than this is refused unread.
const MAX_PROTECTED: usize = 16 * 1024;

impl Envelopes {
    /// Steps 1-3 of the module doc: no resolution of the sender, no
    /// decryption.
    pub fn inspect(&self, packed: Bytes) -> Result<Inspected, EnvelopeError> {
        let limits = &self.limits;
        let shallow: Shallow =
            serde_json::from_slice(&packed).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
        if shallow.payload.is_some() && shallow.signatures.is_some() {
            return Err(EnvelopeError::NotEncrypted);
        }
        let (Some(protected), Some(recipients), Some(_)) =
            (shallow.protected, shallow.recipients, shallow.ciphertext)
        else {
            return Err(EnvelopeError::Malformed(
                "not a JWE (protected, recipients, ciphertext)".into(),
            ));
        };
        let (kid, recipient) = self.our_recipient(&recipients, limits)?;
        let skid = sender_kid(&protected, limits)?;
        let from_stranger = self.admit(&recipient, &skid)?;
        Ok(Inspected {
            packed,
            kid,
            skid,
            recipient,
            from_stranger,
        })
    }

    /// Steps 4-5: resolves the sender, decrypts, checks the plaintext.
    pub fn open(&self, inspected: Inspected) -> Result<Unpacked, EnvelopeError> {
        let limits = &self.limits;
        let Inspected {
            packed,
            kid,
            skid,
            recipient,
            from_stranger,
        } = inspected;
        let text =
            std::str::from_utf8(&packed).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
        let sender = did::resolve(&skid).map_err(EnvelopeError::UnknownSender)?;
        let sender_key = sender
            .agreement_key(&skid)
            .map_err(EnvelopeError::UnknownSender)?;
        let sender_public = x25519(&sender_key.public);
        let private = self
            .keys
            .agreement_secret(&recipient.wallet_id, &recipient.agreement_key_id)
            .map_err(|e| EnvelopeError::Decryption(e.to_string()))?;
        let decrypted = decrypt::decrypt_bound(
            text,
            &kid,
            &private,
            Some(SenderKey::new(&skid, &sender_public)),
        )
        .map_err(|e| EnvelopeError::Decryption(e.to_string()))?;

        self.learn_kid_form(&sender, &skid, !from_stranger);
        let sender_did = sender.did.clone();
        let inner: Value = serde_json::from_slice(&decrypted.plaintext)
            .map_err(|e| EnvelopeError::BadPlaintext(e.to_string()))?;
        let message = if inner.get("payload").is_some() && inner.get("signatures").is_some() {
            let jws = std::str::from_utf8(&decrypted.plaintext)
                .map_err(|e| EnvelopeError::BadPlaintext(e.to_string()))?;
            let (m, signer) = verify_jws(jws, limits)?;
            if signer != sender_did {
                return Err(EnvelopeError::SenderMismatch(format!(
                    "encrypted by {} but signed by {}",
                    clip(&sender_did, SHOWN),
                    clip(&signer, SHOWN)
                )));
            }
            m
        } else {
            serde_json::from_value(inner).map_err(|e| EnvelopeError::BadPlaintext(e.to_string()))?
        };
        check_plaintext(&message, &recipient, &sender_did, limits)?;
        Ok(Unpacked {
            message,
            recipient,
            sender: Some(sender_did),
        })
    }

    /// Both steps at once (tests and the crypto ceiling).
    pub fn unpack(&self, packed: &[u8]) -> Result<Unpacked, EnvelopeError> {
        self.open(self.inspect(Bytes::copy_from_slice(packed))?)
    }

    /// The first recipient key id that names a key-agreement key of a DID
    /// held here.
    fn our_recipient(
        &self,
        recipients: &[ShallowRecipient],
        limits: &Limits,
    ) -> Result<(String, DidRecord), EnvelopeError> {
        if recipients.len() > limits.max_recipients {
            return Err(too_big(
                "recipients",
                recipients.len(),
                limits.max_recipients,
            ));
        }
        let kids = recipients
            .iter()
            .filter_map(|r| r.header.as_ref()?.kid.as_deref());
        for kid in kids {
            if kid.len() > limits.max_did_bytes {
                return Err(too_big("a recipient kid", kid.len(), limits.max_did_bytes));
            }
            let Some(ours) = self.store.did_owner(did::did_of(kid)).ok().flatten() else {
                continue;
            };
            // Our own DID: resolving it is bounded and cached.
            let named = did::resolve(&ours.did).is_ok_and(|d| d.agreement_key(kid).is_ok());
            if named {
                return Ok((kid.to_string(), ours));
            }
        }
        Err(EnvelopeError::UnknownRecipient)
    }

    /// Whether the sender `skid` may send to our DID `recipient`: the peer
    /// bound to the connection that uses it (false), or anyone answering
    /// the invitation of a connection not bound yet (true: a stranger).
    fn admit(&self, recipient: &DidRecord, skid: &str) -> Result<bool, EnvelopeError> {
        let sender = did::did_of(skid);
        let refused = |why: String| Err(EnvelopeError::NotAPeer(why));
        match self.store.connection_by_our_did(&recipient.did) {
            Ok(Some(conn)) => match (&conn.their_did, conn.state) {
                (Some(peer), _) if peer == sender => Ok(false),
                (None, ConnectionState::InvitationSent) => Ok(true),
                (Some(_), _) => refused(format!(
                    "{} is not the peer of the connection that uses {}",
                    clip(sender, SHOWN),
                    clip(&recipient.did, SHOWN)
                )),
                (None, _) => refused("the connection has no peer".into()),
            },
            Ok(None) => refused(format!(
                "no connection uses {}",
                clip(&recipient.did, SHOWN)
            )),
            Err(e) => Err(EnvelopeError::Decryption(e.to_string())),
        }
    }
}

/// The authcrypt sender's key id from the protected header (`skid`, or
/// `apu`, base64url); anonymous messages are refused: no protocol here
/// takes them.
fn sender_kid(protected: &str, limits: &Limits) -> Result<String, EnvelopeError> {
    let bad = |why: &str| EnvelopeError::Malformed(format!("protected header: {why}"));
    if protected.len() > MAX_PROTECTED {
        return Err(too_big(
            "the protected header",
            protected.len(),
            MAX_PROTECTED,
        ));
    }
    let b64 = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|_| bad("not base64url"))
    };
    let header: Value = serde_json::from_slice(&b64(protected)?).map_err(|_| bad("not JSON"))?;
    let skid = match (header.get("skid"), header.get("apu")) {
        (Some(Value::String(skid)), _) => skid.clone(),
        (_, Some(Value::String(apu))) => {
            String::from_utf8(b64(apu)?).map_err(|_| bad("apu is not text"))?
        }
        _ => return Err(EnvelopeError::Anonymous),
    };
    if skid.len() > limits.max_did_bytes {
        return Err(too_big("the sender kid", skid.len(), limits.max_did_bytes));
    }
    Ok(skid)
}

/// Verifies a JWS by its first signature's key (`kid` in the protected or
/// the unprotected header); returns the message and the signer's DID.
fn verify_jws(jws: &str, limits: &Limits) -> Result<(Message, String), EnvelopeError> {
    let parsed = verify::parse_jws(jws).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    let sig = parsed
        .signatures
        .first()
        .ok_or_else(|| EnvelopeError::Malformed("JWS has no signature".into()))?;
    let kid = sig
        .kid
        .as_deref()
        .ok_or_else(|| EnvelopeError::Malformed("JWS signature has no kid".into()))?;
    if kid.len() > limits.max_did_bytes {
        return Err(too_big("the signer kid", kid.len(), limits.max_did_bytes));
    }
    let resolved = did::resolve(kid).map_err(EnvelopeError::UnknownSender)?;
    let key = resolved
        .signing_key(kid)
        .map_err(EnvelopeError::UnknownSender)?;
    let key = match &key.public {
        PublicKey::Ed25519(k) => verify::VerifyKey::Ed25519(k.to_bytes()),
        PublicKey::Secp256k1(_) => verify::VerifyKey::Secp256k1(key.public.to_bytes()),
        PublicKey::P256(_) => verify::VerifyKey::P256(key.public.to_bytes()),
    };
    verify::verify_parsed_signature(sig, &key)
        .map_err(|e| EnvelopeError::BadSignature(e.to_string()))?;
    let message: Message = serde_json::from_slice(&parsed.payload)
        .map_err(|e| EnvelopeError::BadPlaintext(e.to_string()))?;
    Ok((message, resolved.did.clone()))
}

/// Checks that bind the plaintext to its envelope (the authenticated
/// sender is the `from`, the recipient is in `to`) and bound what it
/// carries (ids, counts, times).
fn check_plaintext(
    message: &Message,
    recipient: &DidRecord,
    sender: &str,
    limits: &Limits,
) -> Result<(), EnvelopeError> {
    if message.from.as_deref() != Some(sender) {
        return Err(EnvelopeError::SenderMismatch(format!(
            "`from` is {:?} but the envelope was made by {}",
            message.from.as_deref().map(|f| clip(f, SHOWN)),
            clip(sender, SHOWN)
        )));
    }
    if !message.to.is_empty() && !message.to.iter().any(|t| did::did_of(t) == recipient.did) {
        let to: Vec<String> = message.to.iter().take(4).map(|t| clip(t, SHOWN)).collect();
        return Err(EnvelopeError::RecipientMismatch(to));
    }
    if message.id.is_empty() || message.typ.is_empty() {
        return Err(EnvelopeError::BadPlaintext("empty id or type".into()));
    }
    let ids = [
        ("id", Some(&message.id)),
        ("type", Some(&message.typ)),
        ("thid", message.thid.as_ref()),
        ("pthid", message.pthid.as_ref()),
    ];
    for (name, value) in ids {
        if let Some(v) = value
            && v.len() > limits.max_id_bytes
        {
            return Err(too_big(name, v.len(), limits.max_id_bytes));
        }
    }
    if message.attachments.len() > limits.max_attachments {
        return Err(too_big(
            "attachments",
            message.attachments.len(),
            limits.max_attachments,
        ));
    }
    let now = crate::now_secs();
    if let Some(created) = message.created_time {
        if created.saturating_add(limits.replay_window_secs) < now {
            return Err(EnvelopeError::Stale(created));
        }
        if created > now.saturating_add(limits.clock_skew_secs) {
            return Err(EnvelopeError::FromTheFuture(created));
        }
    }
    if let Some(expires) = message.expires_time
        && expires < now
    {
        return Err(EnvelopeError::Expired(expires));
    }
    Ok(())
}
