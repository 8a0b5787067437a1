//! Keys: generated from the OS RNG, sealed with XChaCha20-Poly1305 under the
//! master key before they reach the store, opened only here.

mod master;

pub use master::MasterKey;

use affinidi_crypto::jose::key_agreement::{Curve, PrivateKeyAgreement};
use ed25519_dalek::{Signer, SigningKey};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::store::{KeyKind, Store, StoredKey};

const CHECK_NAME: &str = "master_key_check";
const CHECK_PLAINTEXT: &[u8] = b"agentd master key check v1";

/// Generates, seals, stores and uses private keys.
#[derive(Clone)]
pub struct KeyStore {
    master: std::sync::Arc<MasterKey>,
    store: Store,
}

/// A freshly made key: its id in the wallet and its public half.
pub struct NewKey {
    pub record: StoredKey,
}

impl KeyStore {
    /// Binds the master key to the store. The first start records a check
    /// value; a later start with another master key fails here, before
    /// anything is written.
    pub fn open(master: MasterKey, store: Store) -> Result<Self> {
        match store.meta(CHECK_NAME)? {
            Some(sealed) => {
                let opened = master.open(CHECK_NAME.as_bytes(), &sealed).map_err(|_| {
                    Error::Crypto(
                        "the master key does not match this database (wrong AGENTD_MASTER_KEY or key file?)"
                            .into(),
                    )
                })?;
                if opened.as_slice() != CHECK_PLAINTEXT {
                    return Err(Error::Crypto("master key check value is corrupt".into()));
                }
            }
            None => {
                let sealed = master.seal(CHECK_NAME.as_bytes(), CHECK_PLAINTEXT);
                store.transact(|tx| tx.set_meta(CHECK_NAME, &sealed))?;
            }
        }
        Ok(KeyStore {
            master: std::sync::Arc::new(master),
            store,
        })
    }

    /// Makes a new key of `kind`, sealed, ready to be stored with
    /// [`crate::store::StoreTx::put_key`] in the same transaction as its use.
    pub fn generate(&self, wallet: &str, kind: KeyKind) -> NewKey {
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::fill(&mut secret[..]);
        let public = match kind {
            KeyKind::Ed25519 => SigningKey::from_bytes(&secret).verifying_key().to_bytes(),
            KeyKind::X25519 => {
                let private = PrivateKeyAgreement::from_raw_bytes(Curve::X25519, &secret[..])
                    .expect("32 bytes is an X25519 key");
                let public = private.public_key().to_public_bytes();
                public.try_into().expect("X25519 public keys are 32 bytes")
            }
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let sealed = self.master.seal(&aad(wallet, &id), &secret[..]);
        NewKey {
            record: StoredKey {
                id,
                kind,
                public,
                sealed,
                created_at_ms: crate::now_ms(),
            },
        }
    }

    fn open_stored(
        &self,
        wallet: &str,
        k: &StoredKey,
        kind: KeyKind,
    ) -> Result<Zeroizing<[u8; 32]>> {
        let key_id = &k.id;
        if k.kind != kind {
            return Err(Error::Crypto(format!(
                "key {key_id} is not an {kind:?} key"
            )));
        }
        let opened = self
            .master
            .open(&aad(wallet, key_id), &k.sealed)
            .map_err(|_| Error::Crypto(format!("key {key_id} cannot be opened")))?;
        let mut secret = Zeroizing::new([0u8; 32]);
        if opened.len() != 32 {
            return Err(Error::Crypto(format!("key {key_id} has the wrong length")));
        }
        secret.copy_from_slice(&opened);
        Ok(secret)
    }

    /// Signs `data` with the wallet's Ed25519 key `key_id`.
    pub fn sign(&self, wallet: &str, key_id: &str, data: &[u8]) -> Result<[u8; 64]> {
        self.sign_with(wallet, &self.store.key(wallet, key_id)?, data)
    }

    /// Signs with a key record the caller has read, e.g. through a
    /// transaction (sled deadlocks on plain reads inside one).
    pub fn sign_with(&self, wallet: &str, key: &StoredKey, data: &[u8]) -> Result<[u8; 64]> {
        let secret = self.open_stored(wallet, key, KeyKind::Ed25519)?;
        Ok(SigningKey::from_bytes(&secret).sign(data).to_bytes())
    }

    /// The X25519 private key for DIDComm key agreement. The returned type
    /// zeroizes itself and redacts its Debug output.
    /// An Ed25519 key (did:key) agrees with its derived X25519 key, as the
    /// did:key method specifies.
    pub(crate) fn agreement_secret(
        &self,
        wallet: &str,
        key_id: &str,
    ) -> Result<PrivateKeyAgreement> {
        let stored = self.store.key(wallet, key_id)?;
        let secret = self.open_stored(wallet, &stored, stored.kind)?;
        let x = match stored.kind {
            KeyKind::X25519 => secret,
            KeyKind::Ed25519 => {
                Zeroizing::new(affinidi_crypto::ed25519::ed25519_private_to_x25519(&secret))
            }
        };
        PrivateKeyAgreement::from_raw_bytes(Curve::X25519, &x[..])
            .map_err(|e| Error::Crypto(e.to_string()))
    }

    /// The Ed25519 private key, for tests that sign DIDComm messages
    /// (a JWS) to see how they are received.
    #[cfg(test)]
    pub(crate) fn signing_secret(&self, wallet: &str, key_id: &str) -> Result<Zeroizing<[u8; 32]>> {
        self.open_stored(wallet, &self.store.key(wallet, key_id)?, KeyKind::Ed25519)
    }
}

/// Binds a sealed key to its slot, so a sealed value copied under another
/// wallet or key id does not open.
fn aad(wallet: &str, key_id: &str) -> Vec<u8> {
    format!("agentd/key/{wallet}/{key_id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keystore(dir: &std::path::Path, master: [u8; 32]) -> Result<KeyStore> {
        let store = Store::open(dir)?;
        KeyStore::open(MasterKey::from_bytes(master), store)
    }

    #[test]
    fn keys_are_sealed_and_bound_to_their_slot() {
        let dir = tempfile::tempdir().unwrap();
        let ks = keystore(dir.path(), [1; 32]).unwrap();
        let k = ks.generate("w1", KeyKind::Ed25519);
        ks.store.transact(|tx| tx.put_key("w1", &k.record)).unwrap();
        let id = k.record.id.clone();
        // The stored bytes are not the secret: the public key is derived from
        // the secret, and nothing in the sealed blob equals any 32-byte window of it.
        let secret = ks.signing_secret("w1", &id).unwrap();
        assert_eq!(
            SigningKey::from_bytes(&secret).verifying_key().to_bytes(),
            k.record.public
        );
        assert!(!k.record.sealed.windows(32).any(|w| w == &secret[..]));
        // Sign and verify.
        let sig = ks.sign("w1", &id, b"hello").unwrap();
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&k.record.public).unwrap();
        vk.verify_strict(b"hello", &ed25519_dalek::Signature::from_bytes(&sig))
            .unwrap();
        // Moved to another wallet, the sealed key does not open.
        ks.store.transact(|tx| tx.put_key("w2", &k.record)).unwrap();
        assert!(ks.sign("w2", &id, b"x").is_err());
        // Wrong kind.
        let x = ks.generate("w1", KeyKind::X25519);
        ks.store.transact(|tx| tx.put_key("w1", &x.record)).unwrap();
        assert!(ks.sign("w1", &x.record.id, b"x").is_err());
    }

    #[test]
    fn a_wrong_master_key_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        drop(keystore(dir.path(), [1; 32]).unwrap());
        let store = Store::open(dir.path()).unwrap();
        let before = store.record_count();
        let err = KeyStore::open(MasterKey::from_bytes([2; 32]), store.clone())
            .err()
            .expect("wrong key refused");
        assert!(
            err.to_string().contains("master key does not match"),
            "{err}"
        );
        assert_eq!(store.record_count(), before);
        assert!(KeyStore::open(MasterKey::from_bytes([1; 32]), store).is_ok());
    }

    #[test]
    fn x25519_keys_agree() {
        let dir = tempfile::tempdir().unwrap();
        let ks = keystore(dir.path(), [1; 32]).unwrap();
        let k = ks.generate("w", KeyKind::X25519);
        ks.store.transact(|tx| tx.put_key("w", &k.record)).unwrap();
        let private = ks.agreement_secret("w", &k.record.id).unwrap();
        assert_eq!(
            private.public_key().to_public_bytes(),
            k.record.public.to_vec()
        );
    }
}
