//! Multibase (base58btc, `z`) + multicodec encoding of raw public keys.

use super::DidError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Ed25519,
    X25519,
}

impl Codec {
    /// Unsigned-varint multicodec prefixes: 0xed (ed25519-pub), 0xec (x25519-pub).
    fn prefix(self) -> [u8; 2] {
        match self {
            Codec::Ed25519 => [0xed, 0x01],
            Codec::X25519 => [0xec, 0x01],
        }
    }
}

pub fn encode(codec: Codec, public: &[u8; 32]) -> String {
    let mut bytes = Vec::with_capacity(34);
    bytes.extend_from_slice(&codec.prefix());
    bytes.extend_from_slice(public);
    format!("z{}", bs58::encode(bytes).into_string())
}

/// Longest multibase key read: base58 decoding is quadratic in the length,
/// and a 34-byte key is 48 characters.
const MAX_MULTIBASE: usize = 64;

pub fn decode(did: &str, codec: Codec, multibase: &str) -> Result<[u8; 32], DidError> {
    if multibase.len() > MAX_MULTIBASE {
        return Err(DidError::malformed(did, "key is too long"));
    }
    let b58 = multibase
        .strip_prefix('z')
        .ok_or_else(|| DidError::malformed(did, "key is not base58btc multibase ('z')"))?;
    let bytes = bs58::decode(b58)
        .into_vec()
        .map_err(|_| DidError::malformed(did, "key is not valid base58"))?;
    let rest = bytes
        .strip_prefix(&codec.prefix())
        .ok_or_else(|| DidError::malformed(did, format!("key is not a {codec:?} public key")))?;
    rest.try_into()
        .map_err(|_| DidError::malformed(did, "public key is not 32 bytes"))
}

/// Characters of the multibase (after `z`) in peerdid-python 0.5's key ids.
pub const PREFIX_LEN: usize = 8;

/// True when `fragment` is this key's multibase, with or without the `z`,
/// or its first [`PREFIX_LEN`] characters after the `z`.
pub fn matches_fragment(public: &[u8; 32], fragment: &str) -> bool {
    [Codec::Ed25519, Codec::X25519].into_iter().any(|codec| {
        let mb = encode(codec, public);
        fragment == mb || fragment == &mb[1..] || fragment == &mb[1..=PREFIX_LEN]
    })
}
