use serde_json::{Map, Value, json};

use super::*;
use crate::store::{DidMethod, DidRecord, KeyType};
use crate::testing;

fn claims() -> Map<String, Value> {
    json!({"name": "Alice", "degree": {"type": "BachelorDegree"}})
        .as_object()
        .unwrap()
        .clone()
}

fn spec<'a>(
    subject: &'a str,
    claims: &'a Map<String, Value>,
    types: &'a [String],
) -> CredentialSpec<'a> {
    CredentialSpec {
        id: "urn:uuid:1",
        types,
        contexts: &[],
        subject,
        claims,
        schema_id: None,
        issued_at: 1_700_000_000,
        validity_secs: 3600,
        status: None,
    }
}

fn key(t: &testing::TestCore, d: &crate::store::DidRecord) -> crate::store::StoredKey {
    t.core.store.key(&d.wallet_id, &d.signing_key_id).unwrap()
}

#[test]
fn issued_credential_verifies_and_round_trips() {
    let t = testing::core();
    let issuer = t.did("default", DidMethod::Key);
    let holder = t.did("default", DidMethod::Key);
    let c = claims();
    let types = vec!["UniversityDegreeCredential".to_string()];
    let jwt = issue(
        &t.core.keys,
        &issuer,
        &key(&t, &issuer),
        &spec(&holder.did, &c, &types),
    )
    .unwrap();
    let v = verify_jwt(&jwt).unwrap();
    assert_eq!(v.header["alg"], "EdDSA");
    assert_eq!(v.header["kid"], key_id(&issuer.did));
    assert_eq!(v.payload["exp"], 1_700_003_600u64);
    let cred = verify(&jwt, Some(&issuer.did), &holder.did, 1_700_000_100).unwrap();
    assert_eq!(cred.claims, c);
    assert_eq!(cred.types, vec![VC_TYPE.to_string(), types[0].clone()]);
    assert_eq!(cred.expires, Some(1_700_003_600));
}

#[test]
fn wrong_issuer_subject_time_or_signature_is_refused() {
    let t = testing::core();
    let issuer = t.did("default", DidMethod::Key);
    let other = t.did("default", DidMethod::Key);
    let holder = t.did("default", DidMethod::Key);
    let c = claims();
    let jwt = issue(
        &t.core.keys,
        &issuer,
        &key(&t, &issuer),
        &spec(&holder.did, &c, &[]),
    )
    .unwrap();
    let now = 1_700_000_100;
    assert!(matches!(
        verify(&jwt, Some(&other.did), &holder.did, now),
        Err(VcError::Claim { claim: "iss", .. })
    ));
    assert!(matches!(
        verify(&jwt, Some(&issuer.did), &other.did, now),
        Err(VcError::Claim { claim: "sub", .. })
    ));
    assert!(matches!(
        verify(&jwt, Some(&issuer.did), &holder.did, 1_700_003_600),
        Err(VcError::Claim { claim: "exp", .. })
    ));
    assert!(matches!(
        verify(&jwt, Some(&issuer.did), &holder.did, 1_600_000_000),
        Err(VcError::Claim { claim: "nbf", .. })
    ));

    // The same payload signed by another key but claiming the issuer's kid.
    let (h, rest) = jwt.split_once('.').unwrap();
    let (p, _) = rest.split_once('.').unwrap();
    let sig = t
        .core
        .keys
        .sign(
            &other.wallet_id,
            &other.signing_key_id,
            format!("{h}.{p}").as_bytes(),
        )
        .unwrap();
    let forged = format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(
        verify(&forged, Some(&issuer.did), &holder.did, now),
        Err(VcError::BadSignature)
    );

    // Signed by `other` with its own kid while claiming to be the issuer.
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    let by_other = sign_jwt(&t.core.keys, &other, &key(&t, &other), &payload).unwrap();
    assert!(matches!(
        verify(&by_other, Some(&issuer.did), &holder.did, now),
        Err(VcError::WrongKey(_))
    ));
}

#[test]
fn malformed_jwts_are_refused_not_panicking() {
    for jwt in [
        "",
        "a.b",
        "a.b.c.d",
        "!!.e30.AA",
        "e30.e30.AA",
        "eyJhbGciOiJFUzI1NiJ9.e30.AA",
    ] {
        assert!(verify_jwt(jwt).is_err(), "{jwt}");
    }
}

const KEY_TYPES: [(KeyType, &str); 3] = [
    (KeyType::Ed25519, "EdDSA"),
    (KeyType::Secp256k1, "ES256K"),
    (KeyType::P256, "ES256"),
];

/// The JWT with its header replaced by `header` (signature kept).
fn with_header(jwt: &str, header: &Value) -> String {
    let (_, rest) = jwt.split_once('.').unwrap();
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

fn header_of(jwt: &str) -> Value {
    let h = jwt.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

/// The JWT with bit 0 of signature byte `i` flipped.
fn flip_signature_bit(jwt: &str, i: usize) -> String {
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[i] ^= 1;
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// A new did:key of `key_type` and a VC-JWT it issued to `subject`.
fn issued_by(
    t: &testing::TestCore,
    key_type: KeyType,
    subject: &str,
    claims: &Map<String, Value>,
) -> (DidRecord, String) {
    let issuer = t.did_key_of("default", DidMethod::Key, key_type);
    let jwt = issue(
        &t.core.keys,
        &issuer,
        &key(t, &issuer),
        &spec(subject, claims, &[]),
    )
    .unwrap();
    (issuer, jwt)
}

#[test]
fn each_key_type_signs_with_its_alg_and_verifies() {
    let t = testing::core();
    let holder = t.did("default", DidMethod::Key);
    let c = claims();
    for (key_type, alg) in KEY_TYPES {
        let (issuer, jwt) = issued_by(&t, key_type, &holder.did, &c);
        assert_eq!(issuer.key_type, key_type);
        let v = verify_jwt(&jwt).unwrap();
        assert_eq!(v.header["alg"], alg);
        assert_eq!(v.header["kid"], key_id(&issuer.did));
        // JWS signatures are 64 bytes for all three: r‖s for ECDSA, not DER.
        let sig = URL_SAFE_NO_PAD
            .decode(jwt.rsplit_once('.').unwrap().1)
            .unwrap();
        assert_eq!(sig.len(), 64, "{alg}");
        if key_type == KeyType::Secp256k1 {
            let s = k256::ecdsa::Signature::from_slice(&sig).unwrap();
            assert_eq!(s.normalize_s(), s, "ES256K signatures have a low S");
        }
        let cred = verify(&jwt, Some(&issuer.did), &holder.did, 1_700_000_100).unwrap();
        assert_eq!(cred.claims, c, "{alg}");

        // A changed bit in r, in s, or in the payload breaks the signature.
        for i in [0, 40] {
            assert_eq!(
                verify_jwt(&flip_signature_bit(&jwt, i)),
                Err(VcError::BadSignature),
                "{alg}, signature byte {i}"
            );
        }
        let (h, rest) = jwt.split_once('.').unwrap();
        let (p, s) = rest.split_once('.').unwrap();
        let other_payload = URL_SAFE_NO_PAD.encode(json!({"iss": issuer.did}).to_string());
        assert_eq!(
            verify_jwt(&format!("{h}.{other_payload}.{s}")),
            Err(VcError::BadSignature),
            "{alg}"
        );
        // r and s in a DER sequence, as some ECDSA libraries sign, are not JWS.
        let der = [
            &[0x30, 68, 0x02, 32][..],
            &sig[..32],
            &[0x02, 32],
            &sig[32..],
        ]
        .concat();
        let der = format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(der));
        assert_eq!(verify_jwt(&der), Err(VcError::BadSignature), "{alg}");
    }
}

#[test]
fn an_alg_that_does_not_fit_the_key_is_refused() {
    let t = testing::core();
    let holder = t.did("default", DidMethod::Key);
    let c = claims();
    for (key_type, alg) in KEY_TYPES {
        let (issuer, jwt) = issued_by(&t, key_type, &holder.did, &c);
        for (_, other) in KEY_TYPES.iter().filter(|(_, a)| *a != alg) {
            let mut header = header_of(&jwt);
            header["alg"] = Value::from(*other);
            assert_eq!(
                verify_jwt(&with_header(&jwt, &header)),
                Err(VcError::AlgMismatch {
                    alg: other,
                    kid: key_id(&issuer.did),
                    key_type,
                }),
                "{alg} key, {other} header"
            );
        }
    }
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": key_id(&holder.did)});
    let err = verify_jwt(&with_header("e30.e30.AA", &header)).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"unsupported JWT header: alg "RS256" (EdDSA, ES256K or ES256)"#
    );
}

/// A VC-JWT made outside this agent: signed with the secp256k1 key of a
/// W3C CCG did:key vector, by the `k256` crate directly, in both S forms.
#[test]
fn a_foreign_es256k_jwt_verifies_with_a_high_or_low_s() {
    use k256::ecdsa::signature::Signer;
    let did = "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme";
    let seed = "9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c";
    let seed: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&seed[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let signing = k256::ecdsa::SigningKey::from_slice(&seed).unwrap();
    let subject = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";
    let header = json!({"alg": "ES256K", "typ": "JWT", "kid": key_id(did)});
    let payload = json!({
        "iss": did, "sub": subject, "nbf": 1_700_000_000u64, "jti": "urn:uuid:2",
        "vc": {
            "@context": [VC_CONTEXT],
            "type": [VC_TYPE, "Membership"],
            "credentialSubject": {"id": subject, "member": true},
        },
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let low: k256::ecdsa::Signature = signing.sign(input.as_bytes());
    let (r, s) = low.split_scalars();
    let high = k256::ecdsa::Signature::from_scalars(r, -s).unwrap();
    for sig in [low, high] {
        let jwt = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()));
        let cred = verify(&jwt, Some(did), subject, 1_700_000_100).unwrap();
        assert_eq!(cred.issuer, did);
        assert_eq!(cred.claims["member"], true);
    }
}
