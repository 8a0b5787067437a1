//! Public signing keys of the three key types, and signature verification
//! in JWS form. A key is checked when it is read (a DID naming a point off
//! its curve fails to resolve), and kept decompressed, so verifying does
//! not parse it again.

// One `signature::Verifier` trait serves the three key types.
use ed25519_dalek::Verifier as _;

use crate::store::KeyType;

/// A public key that signatures are checked with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    Secp256k1(k256::ecdsa::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

/// Bytes that are not a public key of the type they claim to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {0} public key")]
pub struct InvalidKey(pub KeyType);

impl PublicKey {
    /// From 32 raw bytes (Ed25519) or a SEC1 point (secp256k1, P-256).
    pub fn from_bytes(key_type: KeyType, bytes: &[u8]) -> Result<Self, InvalidKey> {
        let key = match key_type {
            KeyType::Ed25519 => <&[u8; 32]>::try_from(bytes)
                .ok()
                .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(b).ok())
                .map(PublicKey::Ed25519),
            KeyType::Secp256k1 => k256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                .ok()
                .map(PublicKey::Secp256k1),
            KeyType::P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                .ok()
                .map(PublicKey::P256),
        };
        key.ok_or(InvalidKey(key_type))
    }

    pub fn key_type(&self) -> KeyType {
        match self {
            PublicKey::Ed25519(_) => KeyType::Ed25519,
            PublicKey::Secp256k1(_) => KeyType::Secp256k1,
            PublicKey::P256(_) => KeyType::P256,
        }
    }

    /// The bytes a multikey carries: 32 raw bytes for Ed25519, the 33-byte
    /// compressed point for secp256k1 and P-256.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            PublicKey::Ed25519(k) => k.to_bytes().to_vec(),
            PublicKey::Secp256k1(k) => k.to_sec1_point(true).as_bytes().to_vec(),
            PublicKey::P256(k) => k.to_sec1_point(true).as_bytes().to_vec(),
        }
    }

    /// Whether `signature` signs `data`: 64 bytes, for ECDSA `r‖s` over
    /// SHA-256 (JWS ES256K / ES256; DER is not JWS and is refused). A
    /// secp256k1 signature with a high S is accepted: it verifies just as
    /// well, only its twin with the low S is the one we make, and other
    /// signers (BouncyCastle, as Hyperledger Identus uses it) do not
    /// normalize.
    pub fn verify(&self, data: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify(data, &s).is_ok()),
            PublicKey::Secp256k1(k) => k256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify(data, &s.normalize_s()).is_ok()),
            PublicKey::P256(k) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify(data, &s).is_ok()),
        }
    }
}
