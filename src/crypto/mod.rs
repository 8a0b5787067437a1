//! Keys: generated from the OS RNG, sealed with XChaCha20-Poly1305 under the
//! master key before they reach the store, opened only here. Signing keys
//! are Ed25519, secp256k1 or P-256 ([`PublicKey`] checks their signatures).

mod master;
mod public;
mod rotate;

pub use master::MasterKey;
pub use public::{InvalidKey, PublicKey};
pub use rotate::{KeySource, Rotated, pending_file, rotate_master_key};

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

    /// Opens every stored key: proof that the master key opens them all,
    /// not only the check value. Returns how many there are.
    pub fn open_all(&self) -> Result<usize> {
        let keys = self.store.all_keys()?;
        for (wallet, k) in &keys {
            self.open_stored(wallet, k, k.kind)?;
        }
        Ok(keys.len())
    }

    /// Seals every stored key and the check value under `new` instead, in
    /// one transaction: until it commits the database opens with the old
    /// master key only, and after it with the new one only. Returns how
    /// many keys were sealed again.
    pub fn reseal(&self, new: &MasterKey) -> Result<usize> {
        let mut keys = self.store.all_keys()?;
        for (wallet, k) in &mut keys {
            let secret = self.open_stored(wallet, k, k.kind)?;
            k.sealed = new.seal(&aad(wallet, &k.id), &secret[..]);
        }
        let check = new.seal(CHECK_NAME.as_bytes(), CHECK_PLAINTEXT);
        self.store.transact(|tx| {
            for (wallet, k) in &keys {
                tx.put_key(wallet, k)?;
            }
            tx.set_meta(CHECK_NAME, &check)
        })?;
        self.store.flush()?;
        Ok(keys.len())
    }

    /// Makes a new key of `kind`, sealed, ready to be stored with
    /// [`crate::store::StoreTx::put_key`] in the same transaction as its use.
    pub fn generate(&self, wallet: &str, kind: KeyKind) -> NewKey {
        let (secret, public) = loop {
            let mut secret = Zeroizing::new([0u8; 32]);
            rand::fill(&mut secret[..]);
            if let Some(public) = public_of(kind, &secret) {
                break (secret, public);
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

    /// Signs `data` with the wallet's signing key `key_id`: see [`KeyStore::sign_with`].
    pub fn sign(&self, wallet: &str, key_id: &str, data: &[u8]) -> Result<[u8; 64]> {
        self.sign_with(wallet, &self.store.key(wallet, key_id)?, data)
    }

    /// Signs with a key record the caller has read, e.g. through a
    /// transaction (sled deadlocks on plain reads inside one).
    /// The signature is in JWS form: Ed25519, or ECDSA over SHA-256 as
    /// `r‖s` with, for secp256k1, a low S (the form Bitcoin's and
    /// Ethereum's verifiers insist on, and the one ES256K signers make).
    pub fn sign_with(&self, wallet: &str, key: &StoredKey, data: &[u8]) -> Result<[u8; 64]> {
        let secret = self.open_stored(wallet, key, key.kind)?;
        let corrupt =
            |_| Error::Crypto(format!("key {} is not a valid {:?} key", key.id, key.kind));
        Ok(match key.kind {
            KeyKind::Ed25519 => SigningKey::from_bytes(&secret).sign(data).to_bytes(),
            KeyKind::Secp256k1 => {
                let signing = k256::ecdsa::SigningKey::from_slice(&secret[..]).map_err(corrupt)?;
                let signature: k256::ecdsa::Signature = signing.sign(data);
                signature.normalize_s().to_bytes().into()
            }
            KeyKind::P256 => {
                let signing = p256::ecdsa::SigningKey::from_slice(&secret[..]).map_err(corrupt)?;
                let signature: p256::ecdsa::Signature = signing.sign(data);
                signature.to_bytes().into()
            }
            KeyKind::X25519 => {
                return Err(Error::Crypto(format!(
                    "key {} is an X25519 key, which cannot sign",
                    key.id
                )));
            }
        })
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
            // Our secp256k1 and P-256 keys sign credentials; DIDComm goes
            // through did:peer:2 DIDs, whose agreement keys are X25519.
            KeyKind::Secp256k1 | KeyKind::P256 => {
                return Err(Error::Crypto(format!(
                    "key {key_id} is a {:?} key, which agrees on no DIDComm keys",
                    stored.kind
                )));
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

/// The public half of `secret` as stored, or None when the 32 bytes are no
/// key of `kind`: an ECDSA secret must be below the curve's order, which for
/// P-256 about one random draw in 2^32 is not.
fn public_of(kind: KeyKind, secret: &[u8; 32]) -> Option<Vec<u8>> {
    let public = match kind {
        KeyKind::Ed25519 => PublicKey::Ed25519(SigningKey::from_bytes(secret).verifying_key()),
        KeyKind::Secp256k1 => {
            let signing = k256::ecdsa::SigningKey::from_slice(secret).ok()?;
            PublicKey::Secp256k1(*signing.verifying_key())
        }
        KeyKind::P256 => {
            let signing = p256::ecdsa::SigningKey::from_slice(secret).ok()?;
            PublicKey::P256(*signing.verifying_key())
        }
        KeyKind::X25519 => {
            let private = PrivateKeyAgreement::from_raw_bytes(Curve::X25519, secret)
                .expect("32 bytes is an X25519 key");
            return Some(private.public_key().to_public_bytes());
        }
    };
    Some(public.to_bytes())
}

/// Binds a sealed key to its slot, so a sealed value copied under another
/// wallet or key id does not open.
fn aad(wallet: &str, key_id: &str) -> Vec<u8> {
    format!("agentd/key/{wallet}/{key_id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KeyType;

    fn keystore(dir: &std::path::Path, master: [u8; 32]) -> Result<KeyStore> {
        let store = Store::open(dir)?;
        KeyStore::open(MasterKey::from_bytes(master), store)
    }

    /// A new key of `kind`, stored in `wallet`.
    fn stored(ks: &KeyStore, wallet: &str, kind: KeyKind) -> StoredKey {
        let k = ks.generate(wallet, kind);
        ks.store
            .transact(|tx| tx.put_key(wallet, &k.record))
            .unwrap();
        k.record
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
            SigningKey::from_bytes(&secret).verifying_key().to_bytes()[..],
            k.record.public
        );
        assert!(!k.record.sealed.windows(32).any(|w| w == &secret[..]));
        // Sign and verify.
        let sig = ks.sign("w1", &id, b"hello").unwrap();
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&k.record.public[..].try_into().unwrap())
            .unwrap();
        vk.verify_strict(b"hello", &ed25519_dalek::Signature::from_bytes(&sig))
            .unwrap();
        // Moved to another wallet, the sealed key does not open.
        ks.store.transact(|tx| tx.put_key("w2", &k.record)).unwrap();
        assert!(ks.sign("w2", &id, b"x").is_err());
        // Wrong kind.
        let x = stored(&ks, "w1", KeyKind::X25519);
        assert!(ks.sign("w1", &x.id, b"x").is_err());
    }

    #[test]
    fn every_signing_type_signs_what_its_public_key_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let ks = keystore(dir.path(), [1; 32]).unwrap();
        for (key_type, public_len) in [
            (KeyType::Ed25519, 32),
            (KeyType::Secp256k1, 33),
            (KeyType::P256, 33),
        ] {
            let k = stored(&ks, "w", key_type.kind());
            assert_eq!(k.public.len(), public_len, "{key_type}");
            let secret = ks.open_stored("w", &k, k.kind).unwrap();
            assert!(!k.sealed.windows(32).any(|w| w == &secret[..]));
            let public = PublicKey::from_bytes(key_type, &k.public).unwrap();
            let sig = ks.sign("w", &k.id, b"hello").unwrap();
            assert!(public.verify(b"hello", &sig), "{key_type}");
            assert!(!public.verify(b"hellO", &sig), "{key_type}");
            if key_type != KeyType::Ed25519 {
                assert!(ks.agreement_secret("w", &k.id).is_err());
            }
        }
    }

    #[test]
    fn secp256k1_signatures_have_a_low_s_and_high_s_ones_verify() {
        let dir = tempfile::tempdir().unwrap();
        let ks = keystore(dir.path(), [1; 32]).unwrap();
        let k = stored(&ks, "w", KeyKind::Secp256k1);
        let public = PublicKey::from_bytes(KeyType::Secp256k1, &k.public).unwrap();
        // Half of all ECDSA signatures have a high S before normalization.
        for i in 0..32u8 {
            let sig = ks.sign("w", &k.id, &[i]).unwrap();
            let parsed = k256::ecdsa::Signature::from_slice(&sig).unwrap();
            assert_eq!(parsed.normalize_s(), parsed, "message {i}");
            // Its twin with S' = n - S signs the same message.
            let (r, s) = parsed.split_scalars();
            let twin = k256::ecdsa::Signature::from_scalars(r, -s).unwrap();
            assert_ne!(twin, parsed);
            assert!(public.verify(&[i], &twin.to_bytes()), "message {i}");
        }
    }

    #[test]
    fn a_wrong_master_key_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        drop(keystore(dir.path(), [1; 32]).unwrap());
        // sled's own flusher thread lets go of the directory's lock a moment
        // after the last handle is dropped.
        let store = (0..100)
            .find_map(|_| {
                Store::open(dir.path())
                    .inspect_err(|_| std::thread::sleep(std::time::Duration::from_millis(20)))
                    .ok()
            })
            .expect("the store reopens once sled lets go of its lock");
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
        let k = stored(&ks, "w", KeyKind::X25519);
        let private = ks.agreement_secret("w", &k.id).unwrap();
        assert_eq!(private.public_key().to_public_bytes(), k.public);
    }
}
