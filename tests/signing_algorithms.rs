//! ES256K and ES256 between two real daemons over gRPC: the issuer signs
//! with the key type of the `issuer_did` it gives, the holder's request
//! proof with that of its `subject_did`, and each side checks the other's.

mod common;

use agentd::harness::{self, Clients};
use agentd::rpc::proto::{
    AcceptOfferRequest, CreateDidRequest, CreateOfferRequest, DidMethod, KeyType,
    ListCredentialsRequest, ListDidsRequest, RecordState, ResolveDidRequest,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{WAIT, connect, start};
use serde_json::Value;
use tonic::Code;

async fn create_did(c: &Clients, method: DidMethod, key_type: KeyType) -> Result<String, Code> {
    c.dids
        .clone()
        .create_did(CreateDidRequest {
            method: method as i32,
            key_type: key_type as i32,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().did)
        .map_err(|s| s.code())
}

/// The JWT's header, and its signature checked with the ECDSA key decoded
/// from `issuer` (a did:key) by the `k256`/`p256` crates directly.
fn check_independently(jwt: &str, issuer: &str) -> Value {
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(input.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let multikey = bs58::decode(&issuer["did:key:z".len()..])
        .into_vec()
        .unwrap();
    use k256::ecdsa::signature::Verifier;
    let verified = match (&multikey[..2], header["alg"].as_str()) {
        ([0xe7, 0x01], Some("ES256K")) => {
            let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(&multikey[2..]).unwrap();
            let sig = k256::ecdsa::Signature::from_slice(&sig).unwrap();
            assert_eq!(sig.normalize_s(), sig, "a low S");
            key.verify(input.as_bytes(), &sig).is_ok()
        }
        ([0x80, 0x24], Some("ES256")) => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&multikey[2..]).unwrap();
            let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
            key.verify(input.as_bytes(), &sig).is_ok()
        }
        (prefix, alg) => panic!("{issuer} (multicodec {prefix:02x?}) signed with {alg:?}"),
    };
    assert!(verified, "the credential verifies independently");
    header
}

/// The issuer offers from `issuer_did`, the holder accepts as `subject_did`,
/// the issuer issues automatically; returns the holder's stored VC-JWT.
async fn issue(
    ic: &Clients,
    hc: &mut Clients,
    ci: &str,
    issuer_did: &str,
    subject_did: &str,
) -> String {
    let offer = ic
        .issuance
        .clone()
        .create_offer(CreateOfferRequest {
            connection_id: ci.into(),
            claims_json: r#"{"name":"Alice"}"#.into(),
            types: vec!["MembershipCredential".into()],
            automatic_issuance: true,
            issuer_did: issuer_did.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(offer.issuer_did, issuer_did);
    let offered = harness::wait_for_state(hc, "", &offer.thid, RecordState::OfferReceived, WAIT)
        .await
        .unwrap();
    hc.holder
        .clone()
        .accept_offer(AcceptOfferRequest {
            record_id: offered.record_id,
            subject_did: subject_did.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    harness::wait_for_state(hc, "", &offer.thid, RecordState::CredentialReceived, WAIT)
        .await
        .unwrap();
    let credential = hc
        .holder
        .clone()
        .list_credentials(ListCredentialsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .credentials
        .into_iter()
        .find(|c| c.thid == offer.thid)
        .unwrap();
    assert_eq!(credential.issuer, issuer_did);
    assert_eq!(credential.subject, subject_did);
    credential.jwt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256k_and_es256_credentials_and_proofs_between_two_daemons() {
    let issuer = start("issuer", &[]).await;
    let holder = start("holder", &[]).await;
    let (ic, mut hc, ci) = connect(&issuer, &holder).await;

    let secp = create_did(&ic, DidMethod::Key, KeyType::Secp256k1)
        .await
        .unwrap();
    let p256 = create_did(&ic, DidMethod::Key, KeyType::P256)
        .await
        .unwrap();
    assert!(secp.starts_with("did:key:zQ3s"), "{secp}");
    assert!(p256.starts_with("did:key:zDn"), "{p256}");
    let holder_p256 = create_did(&hc, DidMethod::Key, KeyType::P256)
        .await
        .unwrap();
    let holder_secp = create_did(&hc, DidMethod::Key, KeyType::Secp256k1)
        .await
        .unwrap();
    // Unspecified is Ed25519; a did:peer:2 is Ed25519 only.
    let plain = create_did(&ic, DidMethod::Key, KeyType::Unspecified)
        .await
        .unwrap();
    assert!(plain.starts_with("did:key:z6Mk"), "{plain}");
    assert_eq!(
        create_did(&ic, DidMethod::Peer2, KeyType::Secp256k1).await,
        Err(Code::InvalidArgument)
    );
    // A key type alone means did:key; no method and no key type says nothing.
    let implied = create_did(&ic, DidMethod::Unspecified, KeyType::Secp256k1)
        .await
        .unwrap();
    assert!(implied.starts_with("did:key:zQ3s"), "{implied}");
    assert_eq!(
        create_did(&ic, DidMethod::Unspecified, KeyType::Unspecified).await,
        Err(Code::InvalidArgument)
    );
    let listed = ic
        .dids
        .clone()
        .list_dids(ListDidsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .dids;
    let type_of = |did: &str| listed.iter().find(|d| d.did == did).unwrap().key_type;
    assert_eq!(type_of(&secp), KeyType::Secp256k1 as i32);
    assert_eq!(type_of(&p256), KeyType::P256 as i32);
    assert_eq!(type_of(&plain), KeyType::Ed25519 as i32);
    let doc = ic
        .dids
        .clone()
        .resolve_did(ResolveDidRequest { did: secp.clone() })
        .await
        .unwrap()
        .into_inner()
        .did_document_json;
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(
        doc["assertionMethod"][0],
        format!("{secp}#{}", &secp["did:key:".len()..])
    );

    // ES256K credential; the holder's request proof is ES256 (the issuer
    // verified it before issuing to that subject).
    let jwt = issue(&ic, &mut hc, &ci, &secp, &holder_p256).await;
    let header = check_independently(&jwt, &secp);
    assert_eq!(header["alg"], "ES256K");
    assert_eq!(
        header["kid"],
        format!("{secp}#{}", &secp["did:key:".len()..])
    );

    // And the other way round: ES256 credential, ES256K proof.
    let jwt = issue(&ic, &mut hc, &ci, &p256, &holder_secp).await;
    assert_eq!(check_independently(&jwt, &p256)["alg"], "ES256");
}
