//! did:key for Ed25519 (W3C CCG did:key), with the X25519 key-agreement key
//! derived from the Ed25519 key as the method specifies.

use super::multikey::{self, Codec};
use super::{DidError, ResolvedDid, VerificationKey};

/// The did:key of an Ed25519 public key.
pub fn did_key_from_ed25519(public: &[u8; 32]) -> String {
    format!("did:key:{}", multikey::encode(Codec::Ed25519, public))
}

pub(super) fn resolve(did: &str) -> Result<ResolvedDid, DidError> {
    let mb = &did["did:key:".len()..];
    let ed = multikey::decode(did, Codec::Ed25519, mb)?;
    let x = affinidi_crypto::did_key::ed25519_pub_to_x25519_bytes(&ed)
        .map_err(|_| DidError::malformed(did, "not a valid Ed25519 public key"))?;
    Ok(ResolvedDid {
        did: did.to_string(),
        signing: vec![VerificationKey {
            kid: format!("{did}#{mb}"),
            public: ed,
        }],
        agreement: vec![VerificationKey {
            kid: format!("{did}#{}", multikey::encode(Codec::X25519, &x)),
            public: x,
        }],
        services: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    /// From w3c-ccg/did-method-key test-vectors/ed25519-x25519.json:
    /// (seed, did, Ed25519 publicKeyBase58, X25519 key id, X25519 publicKeyBase58).
    const VECTORS: &[(&str, &str, &str, &str, &str)] = &[
        (
            "0000000000000000000000000000000000000000000000000000000000000000",
            "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
            "4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS",
            "#z6LShs9GGnqk85isEBzzshkuVWrVKsRp24GnDuHk8QWkARMW",
            "7By6kV2t2d188odEM4ExAve1UithKT6dLva4dwsDT3ak",
        ),
        (
            "0000000000000000000000000000000000000000000000000000000000000001",
            "did:key:z6MkjchhfUsD6mmvni8mCdXHw216Xrm9bQe2mBH1P5RDjVJG",
            "6ASf5EcmmEHTgDJ4X4ZT5vT6iHVJBXPg5AN5YoTCpGWt",
            "#z6LSrHyXiPBhUbvPUtyUCdf32sniiMGPTAesgHrtEa4FePtr",
            "FcoNC5NqP9CePWbhfz95iHaEsCjGkZUioK9Ck7Qiw286",
        ),
        (
            "0000000000000000000000000000000000000000000000000000000000000002",
            "did:key:z6MknGc3ocHs3zdPiJbnaaqDi58NGb4pk1Sp9WxWufuXSdxf",
            "8pM1DN3RiT8vbom5u1sNryaNT1nyL8CTTW3b5PwWXRBH",
            "#z6LSkkqoZRC34AEpbkhZCqLDcHQVAxuLpQ7kC8XCXMVUfvjE",
            "A5fe37PAxhX5WNKngBpGHhC1KpNE7nwbK9oX2tqwxYxU",
        ),
        (
            "0000000000000000000000000000000000000000000000000000000000000003",
            "did:key:z6MkvqoYXQfDDJRv8L4wKzxYeuKyVZBfi9Qo6Ro8MiLH3kDQ",
            "HPYVwAQmskwT1qEEeRzhoomyfyupJGASQQtCXSNG8XS2",
            "#z6LSiUo6AEDat8Ze4nQzDo67SGuHLLwsUGkxndHGUjsywHow",
            "7ocvdvQinfqtyQ3Dh9aA7ggoVCQkmfaoueZazHETDv3B",
        ),
    ];

    fn b58(s: &str) -> [u8; 32] {
        bs58::decode(s).into_vec().unwrap().try_into().unwrap()
    }

    #[test]
    fn w3c_ccg_vectors_create() {
        for (seed, did, ed_b58, _, _) in VECTORS {
            let seed: [u8; 32] = (0..32)
                .map(|i| u8::from_str_radix(&seed[2 * i..2 * i + 2], 16).unwrap())
                .collect::<Vec<_>>()
                .try_into()
                .unwrap();
            let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
            assert_eq!(public, b58(ed_b58));
            assert_eq!(did_key_from_ed25519(&public), *did);
        }
    }

    #[test]
    fn w3c_ccg_vectors_resolve() {
        for (_, did, ed_b58, x_id, x_b58) in VECTORS {
            let r = super::super::resolve(did).unwrap();
            assert_eq!(r.signing[0].public, b58(ed_b58));
            assert_eq!(r.signing[0].kid, format!("{did}#{}", &did[8..]));
            assert_eq!(r.agreement[0].public, b58(x_b58));
            assert_eq!(r.agreement[0].kid, format!("{did}{x_id}"));
            let doc = r.document();
            assert_eq!(doc["keyAgreement"][0], format!("{did}{x_id}"));
        }
    }

    #[test]
    fn malformed_did_keys_are_rejected() {
        for did in [
            "did:key:",
            "did:key:6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
            "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW0",
            "did:key:z6LShs9GGnqk85isEBzzshkuVWrVKsRp24GnDuHk8QWkARMW",
            "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8q",
        ] {
            assert!(
                matches!(super::super::resolve(did), Err(DidError::Malformed { .. })),
                "{did}"
            );
        }
    }
}
