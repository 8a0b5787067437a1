use serde_json::{Map, Value, json};

use super::*;
use crate::store::DidMethod;
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
        subject,
        claims,
        schema_id: None,
        issued_at: 1_700_000_000,
        validity_secs: 3600,
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
