//! Multibase (base58btc, `z`) + multicodec encoding of raw public keys.

use super::DidError;
use crate::crypto::PublicKey;
use crate::store::KeyType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Ed25519,
    X25519,
    Secp256k1,
    P256,
}

impl Codec {
    /// Unsigned-varint multicodec prefixes: 0xed (ed25519-pub), 0xec
    /// (x25519-pub), 0xe7 (secp256k1-pub), 0x1200 (p256-pub).
    fn prefix(self) -> &'static [u8] {
        match self {
            Codec::Ed25519 => &[0xed, 0x01],
            Codec::X25519 => &[0xec, 0x01],
            Codec::Secp256k1 => &[0xe7, 0x01],
            Codec::P256 => &[0x80, 0x24],
        }
    }

    /// Raw keys are 32 bytes; ECDSA keys are compressed SEC1 points.
    fn key_len(self) -> usize {
        match self {
            Codec::Ed25519 | Codec::X25519 => 32,
            Codec::Secp256k1 | Codec::P256 => 33,
        }
    }

    /// The codec of a signing key type.
    pub fn of(key_type: KeyType) -> Self {
        match key_type {
            KeyType::Ed25519 => Codec::Ed25519,
            KeyType::Secp256k1 => Codec::Secp256k1,
            KeyType::P256 => Codec::P256,
        }
    }
}

pub fn encode(codec: Codec, public: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(codec.prefix().len() + public.len());
    bytes.extend_from_slice(codec.prefix());
    bytes.extend_from_slice(public);
    format!("z{}", bs58::encode(bytes).into_string())
}

/// The multikey of a signing key.
pub fn encode_signing(public: &PublicKey) -> String {
    encode(Codec::of(public.key_type()), &public.to_bytes())
}

/// Longest multibase key read: base58 decoding is quadratic in the length,
/// and a 35-byte key is 49 characters.
const MAX_MULTIBASE: usize = 64;

/// An X25519 key-agreement key.
pub fn decode_x25519(did: &str, multibase: &str) -> Result<[u8; 32], DidError> {
    match decode_any(did, multibase)? {
        (Codec::X25519, bytes) => bytes
            .try_into()
            .map_err(|_| DidError::malformed(did, "X25519 public key is not 32 bytes")),
        _ => Err(DidError::malformed(did, "key is not an X25519 public key")),
    }
}

/// A signing key of any type (Ed25519, secp256k1, P-256), checked to be a
/// valid public key.
pub fn decode_signing(did: &str, multibase: &str) -> Result<PublicKey, DidError> {
    let (codec, bytes) = decode_any(did, multibase)?;
    let key_type = match codec {
        Codec::Ed25519 => KeyType::Ed25519,
        Codec::Secp256k1 => KeyType::Secp256k1,
        Codec::P256 => KeyType::P256,
        Codec::X25519 => {
            return Err(DidError::malformed(
                did,
                "key is an X25519 key, not a signing key",
            ));
        }
    };
    PublicKey::from_bytes(key_type, &bytes).map_err(|e| DidError::malformed(did, e.to_string()))
}

fn decode_any(did: &str, multibase: &str) -> Result<(Codec, Vec<u8>), DidError> {
    if multibase.len() > MAX_MULTIBASE {
        return Err(DidError::malformed(did, "key is too long"));
    }
    let b58 = multibase
        .strip_prefix('z')
        .ok_or_else(|| DidError::malformed(did, "key is not base58btc multibase ('z')"))?;
    let bytes = bs58::decode(b58)
        .into_vec()
        .map_err(|_| DidError::malformed(did, "key is not valid base58"))?;
    let (codec, rest) = [Codec::Ed25519, Codec::X25519, Codec::Secp256k1, Codec::P256]
        .into_iter()
        .find_map(|c| bytes.strip_prefix(c.prefix()).map(|rest| (c, rest)))
        .ok_or_else(|| {
            DidError::malformed(
                did,
                "key is not an Ed25519, X25519, secp256k1 or P-256 public key \
                 (multicodec ed01, ec01, e701, 8024)",
            )
        })?;
    if rest.len() != codec.key_len() {
        return Err(DidError::malformed(
            did,
            format!("{codec:?} public key is not {} bytes", codec.key_len()),
        ));
    }
    Ok((codec, rest.to_vec()))
}

/// Characters of the multibase (after `z`) in peerdid-python 0.5's key ids.
pub const PREFIX_LEN: usize = 8;

/// True when `fragment` is the multibase `multikey`, with or without the
/// `z`, or its first [`PREFIX_LEN`] characters after the `z`.
pub fn matches_fragment(multikey: &str, fragment: &str) -> bool {
    fragment == multikey
        || fragment == &multikey[1..]
        || multikey.get(1..=PREFIX_LEN) == Some(fragment)
}
