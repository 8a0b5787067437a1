//! did:key (W3C CCG did:key) for Ed25519, secp256k1 and P-256 keys. An
//! Ed25519 did:key also has the X25519 key-agreement key the method derives
//! from it; the ECDSA ones only sign here (their keys could agree on
//! ECDH-ES keys, which no DIDComm exchange of ours uses).

use super::multikey::{self, Codec};
use super::{DidError, ResolvedDid, VerificationKey};
use crate::crypto::PublicKey;
use crate::store::KeyType;

/// The did:key of a public key: raw Ed25519 bytes (`z6Mk…`), or a
/// compressed secp256k1 (`zQ3s…`) or P-256 (`zDn…`) point.
pub fn did_key(key_type: KeyType, public: &[u8]) -> String {
    format!("did:key:{}", multikey::encode(Codec::of(key_type), public))
}

pub(super) fn resolve(did: &str) -> Result<ResolvedDid, DidError> {
    let mb = &did["did:key:".len()..];
    let public = multikey::decode_signing(did, mb)?;
    let agreement = match &public {
        PublicKey::Ed25519(ed) => {
            let x = affinidi_crypto::did_key::ed25519_pub_to_x25519_bytes(ed.as_bytes())
                .map_err(|_| DidError::malformed(did, "not a valid Ed25519 public key"))?;
            vec![VerificationKey {
                kid: format!("{did}#{}", multikey::encode(Codec::X25519, &x)),
                public: x,
            }]
        }
        PublicKey::Secp256k1(_) | PublicKey::P256(_) => vec![],
    };
    Ok(ResolvedDid {
        did: did.to_string(),
        signing: vec![VerificationKey {
            kid: format!("{did}#{mb}"),
            public,
        }],
        agreement,
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

    fn hex32(s: &str) -> [u8; 32] {
        (0..32)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect::<Vec<_>>()
            .try_into()
            .unwrap()
    }

    fn b64(s: &str) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap()
    }

    /// From w3c-ccg/did-method-key test-vectors/secp256k1.json:
    /// (seed = private key, did, compressed publicKeyBase58).
    const SECP256K1: &[(&str, &str, &str)] = &[
        (
            "9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c",
            "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
            "23o6Sau8NxxzXcgSc3PLcNxrzrZpbLeBn1izfv3jbKhuv",
        ),
        (
            "f0f4df55a2b3ff13051ea814a8f24ad00f2e469af73c363ac7e9fb999a9072ed",
            "did:key:zQ3shtxV1FrJfhqE1dvxYRcCknWNjHc3c5X1y3ZSoPDi2aur2",
            "291KzQhqCPC18PqH83XKhxv1HdqrdnxyS7dh15t2uNRzJ",
        ),
        (
            "6b0b91287ae3348f8c2f2552d766f30e3604867e34adc37ccbb74a8e6b893e02",
            "did:key:zQ3shZc2QzApp2oymGvQbzP8eKheVshBHbU4ZYjeXqwSKEn6N",
            "oesQ92MLiAkt2pjBcJFbW7H4DvzKJv22cotjYbmC2JEe",
        ),
        (
            "c0a6a7c560d37d7ba81ecee9543721ff48fea3e0fb827d42c1868226540fac15",
            "did:key:zQ3shadCps5JLAHcZiuX5YUtWHHL8ysBJqFLWvjZDKAWUBGzy",
            "pg3p1vprqePgUoqfAQ1TTgxhL6zLYhHyzooR1pqLxo9F",
        ),
        (
            "175a232d440be1e0788f25488a73d9416c04b6f924bea6354bf05dd2f1a75133",
            "did:key:zQ3shptjE6JwdkeKN4fcpnYQY3m9Cet3NiHdAfpvSUZBFoKBj",
            "24waDFAUAS16UpZwQQTXVEAmm17rQRjadjuAeBDW8aqL1",
        ),
    ];

    /// From w3c-ccg/did-method-key test-vectors/nist-curves.json: (did,
    /// JWK x, y, d), base64url.
    const P256: &[(&str, &str, &str, &str)] = &[
        (
            "did:key:zDnaerx9CtbPJ1q36T5Ln5wYt3MQYeGRG5ehnPAmxcf5mDZpv",
            "igrFmi0whuihKnj9R3Om1SoMph72wUGeFaBbzG2vzns",
            "efsX5b10x8yjyrj4ny3pGfLcY7Xby1KzgqOdqnsrJIM",
            "gPh-VvVS8MbvKQ9LSVVmfnxnKjHn4Tqj0bmbpehRlpc",
        ),
        (
            "did:key:zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2169",
            "fyNYMN0976ci7xqiSdag3buk-ZCwgXU4kz9XNkBlNUI",
            "hW2ojTNfH7Jbi8--CJUo3OCbH3y5n91g-IMA9MLMbTU",
            "YjRs6vNvw4sYrzVVY8ipkEpDAD9PFqw1sUnvPRMA-WI",
        ),
    ];

    #[test]
    fn w3c_ccg_secp256k1_vectors() {
        for (seed, did, public_b58) in SECP256K1 {
            let signing = k256::ecdsa::SigningKey::from_slice(&hex32(seed)).unwrap();
            let public = signing.verifying_key().to_sec1_point(true);
            assert_eq!(
                public.as_bytes(),
                bs58::decode(public_b58).into_vec().unwrap()
            );
            assert_eq!(did_key(KeyType::Secp256k1, public.as_bytes()), *did);
            let r = super::super::resolve(did).unwrap();
            assert_eq!(
                r.signing[0].public,
                PublicKey::Secp256k1(*signing.verifying_key()),
                "{did}"
            );
            assert_eq!(r.signing[0].kid, format!("{did}#{}", &did[8..]));
            assert!(r.agreement.is_empty());
            assert_eq!(
                r.document()["assertionMethod"][0],
                format!("{did}#{}", &did[8..])
            );
        }
    }

    #[test]
    fn w3c_ccg_p256_vectors() {
        for (did, x, y, d) in P256 {
            let r = super::super::resolve(did).unwrap();
            let PublicKey::P256(resolved) = &r.signing[0].public else {
                panic!("{did} is not a P-256 key: {:?}", r.signing[0].public);
            };
            // Decompressed from the DID, the point is the JWK's (x, y) ...
            let point = resolved.to_sec1_point(false);
            assert_eq!(point.x().unwrap().as_slice(), b64(x), "{did}");
            assert_eq!(point.y().unwrap().as_slice(), b64(y), "{did}");
            // ... which, compressed again, gives the DID back ...
            let uncompressed = [&[4u8][..], &b64(x), &b64(y)].concat();
            let from_jwk = PublicKey::from_bytes(KeyType::P256, &uncompressed).unwrap();
            assert_eq!(did_key(KeyType::P256, &from_jwk.to_bytes()), *did);
            // ... as does the public key of the private key d.
            let signing = p256::ecdsa::SigningKey::from_slice(&b64(d)).unwrap();
            let public = signing.verifying_key().to_sec1_point(true);
            assert_eq!(did_key(KeyType::P256, public.as_bytes()), *did);
        }
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
            assert_eq!(did_key(KeyType::Ed25519, &public), *did);
        }
    }

    #[test]
    fn w3c_ccg_vectors_resolve() {
        for (_, did, ed_b58, x_id, x_b58) in VECTORS {
            let r = super::super::resolve(did).unwrap();
            assert_eq!(r.signing[0].public.to_bytes(), b58(ed_b58));
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
            // secp256k1 and P-256 keys cut short, and points off the curve.
            "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBm",
            "did:key:zDnaerx9CtbPJ1q36T5Ln5wYt3MQYeGRG5ehnPAmxcf5mDZp",
            &did_key(KeyType::Secp256k1, &[&[2u8][..], &[0xff; 32]].concat()),
            &did_key(KeyType::P256, &[&[3u8][..], &[0xff; 32]].concat()),
        ]
        .map(str::to_string)
        {
            assert!(
                matches!(super::super::resolve(&did), Err(DidError::Malformed { .. })),
                "{did}"
            );
        }
    }
}
