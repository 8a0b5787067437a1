use super::*;
use crate::crypto::MasterKey;
use crate::store::{Connection, ConnectionRole, ConnectionState, DidMethod};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use serde_json::Value;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    envelopes: Envelopes,
    /// Alice and Bob are connected; Carol is a stranger to both.
    alice: DidRecord,
    bob: DidRecord,
    carol: DidRecord,
}

fn peer_did(keys: &KeyStore, store: &Store, wallet: &str) -> DidRecord {
    let new = crate::wallet::new_did(
        keys,
        "http://127.0.0.1:9/didcomm",
        wallet,
        DidMethod::Peer2,
        "test",
    );
    store
        .transact(|tx| crate::wallet::put_did(tx, &new))
        .unwrap();
    new.record
}

/// A connection of `ours` with `theirs` (None: an invitation still open).
fn connection(store: &Store, ours: &DidRecord, theirs: Option<&DidRecord>) {
    let c = Connection {
        id: uuid::Uuid::new_v4().to_string(),
        wallet_id: ours.wallet_id.clone(),
        state: match theirs {
            Some(_) => ConnectionState::Active,
            None => ConnectionState::InvitationSent,
        },
        role: ConnectionRole::Inviter,
        our_did: ours.did.clone(),
        their_did: theirs.map(|t| t.did.clone()),
        invitation_id: "inv".into(),
        label: String::new(),
        created_at_ms: 0,
        updated_at_ms: 0,
        problem: None,
        offer_thid: None,
    };
    store.transact(|tx| tx.put_connection(&c)).unwrap();
}

fn fixture_with(limits: Limits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let keys = KeyStore::open(MasterKey::from_bytes([5; 32]), store.clone()).unwrap();
    let alice = peer_did(&keys, &store, "a");
    let bob = peer_did(&keys, &store, "b");
    let carol = peer_did(&keys, &store, "c");
    connection(&store, &alice, Some(&bob));
    connection(&store, &bob, Some(&alice));
    Fixture {
        _dir: dir,
        envelopes: Envelopes::new(keys, store.clone(), limits),
        store,
        alice,
        bob,
        carol,
    }
}

fn fixture() -> Fixture {
    fixture_with(Limits::default())
}

fn hello_from(from: &DidRecord, to: &DidRecord) -> Message {
    let mut m = Message::new(
        "https://didcomm.org/basicmessage/2.0/message",
        serde_json::json!({"content": "hi"}),
    );
    m.from = Some(from.did.clone());
    m.to = vec![to.did.clone()];
    m
}

fn hello(f: &Fixture) -> Message {
    hello_from(&f.alice, &f.bob)
}

fn refused(f: &Fixture, packed: &str) -> EnvelopeError {
    f.envelopes.unpack(packed.as_bytes()).unwrap_err()
}

#[test]
fn authcrypt_and_signed_authcrypt_round_trip() {
    let f = fixture();
    let m = hello(&f);
    let packed = f
        .envelopes
        .pack_authcrypt(&f.alice, &f.bob.did, &m)
        .unwrap();
    let u = f.envelopes.unpack(packed.as_bytes()).unwrap();
    assert_eq!(u.message, m);
    assert_eq!(u.sender.as_deref(), Some(f.alice.did.as_str()));
    assert_eq!(u.recipient.did, f.bob.did);

    let signed = f
        .envelopes
        .pack_signed(&f.alice, Some(&f.alice), &f.bob.did, &m)
        .unwrap();
    let u = f.envelopes.unpack(signed.as_bytes()).unwrap();
    assert_eq!(u.message, m);
    assert_eq!(u.sender.as_deref(), Some(f.alice.did.as_str()));
}

/// peerdid-python 0.5 names keys `#` + 8 characters of their multibase:
/// such an envelope opens, and the answer spells our keys (and theirs)
/// the same way, also after a restart.
#[test]
fn a_peer_s_key_id_form_is_accepted_learnt_and_spoken_back() {
    let f = fixture();
    f.envelopes.kid_forms.learn(&f.bob.did, KidForm::Prefix8);
    let packed = f
        .envelopes
        .pack_authcrypt(&f.alice, &f.bob.did, &hello(&f))
        .unwrap();
    let v: Value = serde_json::from_str(&packed).unwrap();
    let protected: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(v["protected"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let fragment = |kid: &Value| kid.as_str().unwrap().split_once('#').unwrap().1.len();
    assert_eq!(fragment(&v["recipients"][0]["header"]["kid"]), 8);
    assert_eq!(fragment(&protected["skid"]), 8);

    let u = f.envelopes.unpack(packed.as_bytes()).unwrap();
    assert_eq!(u.sender.as_deref(), Some(f.alice.did.as_str()));
    assert_eq!(f.envelopes.kid_form(&f.alice.did), KidForm::Prefix8);
    let restarted = Envelopes::new(f.envelopes.keys.clone(), f.store.clone(), Limits::default());
    assert_eq!(restarted.kid_form(&f.alice.did), KidForm::Prefix8);
    assert_eq!(restarted.kid_form(&f.carol.did), KidForm::Spec);
}

/// A signed message inside authcrypt, its signer `kid` in the protected
/// header or in the per-signature header (credo-ts and didcomm-python
/// put it there: credo-ts #2812, affinidi-tdk-rs #323), in any key-id
/// form: all verify, and a kid naming another key does not.
#[test]
fn signed_messages_carry_their_kid_wherever_peers_put_it() {
    let f = fixture();
    let m = hello(&f);
    let b64 = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
    let ours = did::resolve(&f.alice.did).unwrap();
    let key = &ours.signing[0];
    // peerdid-python 0.5's id: 8 characters of the V key after its `z`.
    let v = f.alice.did.split(".V").nth(1).unwrap();
    let prefix8 = format!("{}#{}", f.alice.did, &v[1..9]);
    let jws = |kid: &str, in_protected: bool| {
        let mut protected =
            serde_json::json!({"typ": "application/didcomm-signed+json", "alg": "EdDSA"});
        let mut signature = serde_json::json!({});
        if in_protected {
            protected["kid"] = Value::from(kid);
        } else {
            signature["header"] = serde_json::json!({ "kid": kid });
        }
        let (p, payload) = (
            b64(protected.to_string().as_bytes()),
            b64(m.to_json().as_bytes()),
        );
        let sig = f
            .envelopes
            .keys
            .sign(
                &f.alice.wallet_id,
                &f.alice.signing_key_id,
                format!("{p}.{payload}").as_bytes(),
            )
            .unwrap();
        signature["protected"] = Value::from(p);
        signature["signature"] = Value::from(b64(&sig));
        serde_json::json!({ "payload": payload, "signatures": [signature] }).to_string()
    };
    for kid in [key.kid.clone(), prefix8] {
        for in_protected in [true, false] {
            let packed = f
                .envelopes
                .authcrypt(&f.alice, &f.bob.did, jws(&kid, in_protected).as_bytes())
                .unwrap();
            let u = f
                .envelopes
                .unpack(packed.as_bytes())
                .unwrap_or_else(|e| panic!("{kid} (protected: {in_protected}): {e}"));
            assert_eq!(u.message, m);
        }
    }
    let bob_key = did::resolve(&f.bob.did).unwrap().signing[0].kid.clone();
    let packed = f
        .envelopes
        .authcrypt(&f.alice, &f.bob.did, jws(&bob_key, false).as_bytes())
        .unwrap();
    assert!(f.envelopes.unpack(packed.as_bytes()).is_err());
}

#[test]
fn anonymous_signed_only_and_mis_signed_messages_are_refused() {
    let f = fixture();
    let m = hello(&f);
    let mut anon = m.clone();
    anon.from = None;
    let e = refused(&f, &f.envelopes.pack_anoncrypt(&f.bob.did, &anon).unwrap());
    assert!(matches!(e, EnvelopeError::Anonymous), "{e}");
    let jws = f
        .envelopes
        .pack_signed(&f.alice, None, &f.bob.did, &m)
        .unwrap();
    assert!(matches!(refused(&f, &jws), EnvelopeError::NotEncrypted));
    // Signed by Bob inside Alice's authcrypt: the signer is not the sender.
    let mut by_bob = m.clone();
    by_bob.from = Some(f.bob.did.clone());
    let e = refused(
        &f,
        &f.envelopes
            .pack_signed(&f.bob, Some(&f.alice), &f.bob.did, &by_bob)
            .unwrap(),
    );
    assert!(matches!(e, EnvelopeError::SenderMismatch(_)), "{e}");
}

/// A stranger is refused before anything of its DID is resolved or
/// decrypted; an invitation still open takes its first message from
/// anyone.
#[test]
fn only_a_connections_peer_or_an_open_invitation_is_heard() {
    let f = fixture();
    let m = hello_from(&f.carol, &f.bob);
    let packed = f
        .envelopes
        .pack_authcrypt(&f.carol, &f.bob.did, &m)
        .unwrap();
    assert!(matches!(refused(&f, &packed), EnvelopeError::NotAPeer(_)));
    // Carol's own DID has no connection at all.
    let to_carol = hello_from(&f.alice, &f.carol);
    let packed = f
        .envelopes
        .pack_authcrypt(&f.alice, &f.carol.did, &to_carol)
        .unwrap();
    assert!(matches!(refused(&f, &packed), EnvelopeError::NotAPeer(_)));
    // Once Carol's DID belongs to an open invitation, Alice may answer it.
    connection(&f.store, &f.carol, None);
    assert!(f.envelopes.unpack(packed.as_bytes()).is_ok());
}

#[test]
fn identifiers_counts_and_times_are_bounded() {
    let f = fixture_with(Limits {
        max_id_bytes: 60,
        max_attachments: 1,
        max_recipients: 1,
        ..Limits::default()
    });
    let pack = |m: &Message| f.envelopes.pack_authcrypt(&f.alice, &f.bob.did, m).unwrap();
    let mut m = hello(&f);
    m.id = "x".repeat(61);
    assert!(matches!(refused(&f, &pack(&m)), EnvelopeError::Limit(_)));
    let mut m = hello(&f);
    m.thid = Some("t".repeat(61));
    assert!(matches!(refused(&f, &pack(&m)), EnvelopeError::Limit(_)));
    let mut m = hello(&f);
    let attachment: super::super::Attachment =
        serde_json::from_value(serde_json::json!({"data": {"json": {}}})).unwrap();
    m.attachments = vec![attachment.clone(), attachment];
    assert!(matches!(refused(&f, &pack(&m)), EnvelopeError::Limit(_)));
    let mut m = hello(&f);
    m.created_time = Some(crate::now_secs() - 49 * 3600);
    let e = refused(&f, &pack(&m));
    assert!(matches!(e, EnvelopeError::Stale(_)), "{e}");
    m.created_time = Some(crate::now_secs() + 3600);
    assert!(matches!(
        refused(&f, &pack(&m)),
        EnvelopeError::FromTheFuture(_)
    ));
    m.created_time = None;
    m.expires_time = Some(u64::MAX);
    assert!(f.envelopes.unpack(pack(&m).as_bytes()).is_ok());
    // Two recipients where one is allowed, and a kid longer than a DID may be.
    let mut v: Value = serde_json::from_str(&pack(&hello(&f))).unwrap();
    let first = v["recipients"][0].clone();
    v["recipients"] = Value::Array(vec![first.clone(), first]);
    assert!(matches!(
        refused(&f, &v.to_string()),
        EnvelopeError::Limit(_)
    ));
    let mut v: Value = serde_json::from_str(&pack(&hello(&f))).unwrap();
    v["recipients"][0]["header"]["kid"] = Value::String(format!("did:peer:2.{}", "E".repeat(5000)));
    assert!(matches!(
        refused(&f, &v.to_string()),
        EnvelopeError::Limit(_)
    ));
}

/// Flips, truncations and splices of a valid envelope, and random bytes:
/// unpack never panics; it refuses, or (for a change that leaves the
/// envelope intact) yields the original message.
fn check_mutant(f: &Fixture, original: &Message, bytes: &[u8]) {
    match f.envelopes.unpack(bytes) {
        Err(_) => {}
        Ok(u) => assert_eq!(&u.message, original),
    }
}

proptest! {
    // 256 cases by default; `PROPTEST_CASES=100000 cargo test --release
    // fuzz_` runs a long pass (see README, "Threat model").
    #![proptest_config(ProptestConfig::default())]

    /// Any field of the JWE (or of its protected header) replaced by
    /// any JSON: refused with a typed error, never a panic.
    #[test]
    fn fuzz_envelope_structure_never_panics(
        path in prop::sample::select(vec![
            "protected", "iv", "ciphertext", "tag", "recipients",
            "recipients/0", "recipients/0/header", "recipients/0/header/kid",
            "recipients/0/encrypted_key", "payload", "signatures",
            "protected/skid", "protected/apu", "protected/alg", "protected/enc", "protected/epk",
        ]),
        value in crate::testing::any_json(),
    ) {
        let f = FIXTURE.with(|f| f.clone());
        let (fx, original, packed) = &*f;
        let mut v: Value = serde_json::from_str(packed).unwrap();
        match path.strip_prefix("protected/") {
            Some(field) => {
                let raw = URL_SAFE_NO_PAD.decode(v["protected"].as_str().unwrap()).unwrap();
                let mut header: Value = serde_json::from_slice(&raw).unwrap();
                header[field] = value;
                v["protected"] = Value::String(URL_SAFE_NO_PAD.encode(header.to_string()));
            }
            None => {
                let pointer = format!("/{path}");
                if let Some(slot) = v.pointer_mut(&pointer) {
                    *slot = value;
                } else {
                    v[path] = value;
                }
            }
        }
        check_mutant(fx, original, v.to_string().as_bytes());
    }

    /// Any plaintext, properly authcrypted by the connection's peer:
    /// a message-shaped object with fields of any type, or any JSON.
    #[test]
    fn fuzz_plaintext_never_panics(
        fields in prop::collection::btree_map(
            prop::sample::select(vec![
                "id", "type", "from", "to", "thid", "pthid", "created_time",
                "expires_time", "body", "attachments", "please_ack",
            ]),
            crate::testing::any_json(),
            0..8,
        ),
        raw in crate::testing::any_json(),
        use_raw in any::<bool>(),
    ) {
        let f = FIXTURE.with(|f| f.clone());
        let fx = &f.0;
        let plaintext = if use_raw {
            raw
        } else {
            let mut m = serde_json::json!({
                "id": "m-1", "type": "https://didcomm.org/basicmessage/2.0/message",
                "from": fx.alice.did, "to": [fx.bob.did], "body": {},
            });
            for (k, v) in fields {
                m[k] = v;
            }
            m
        };
        let packed = fx
            .envelopes
            .authcrypt(&fx.alice, &fx.bob.did, plaintext.to_string().as_bytes())
            .unwrap();
        let _ = fx.envelopes.unpack(packed.as_bytes());
    }

    #[test]
    fn fuzz_mutated_envelopes_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let f = FIXTURE.with(|f| f.clone());
        let (fx, original, packed) = &*f;
        let mut bytes = packed.as_bytes().to_vec();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= b | 1;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        check_mutant(fx, original, &bytes);
    }

    #[test]
    fn fuzz_random_json_fields_never_panic(field in "(protected|recipients|iv|ciphertext|tag|header|kid|payload|signatures)", value in any::<String>()) {
        let f = FIXTURE.with(|f| f.clone());
        let (fx, original, packed) = &*f;
        let mut v: Value = serde_json::from_str(packed).unwrap();
        v[field.as_str()] = Value::String(value);
        check_mutant(fx, original, v.to_string().as_bytes());
    }

    #[test]
    fn fuzz_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let f = FIXTURE.with(|f| f.clone());
        prop_assert!(f.0.envelopes.unpack(&bytes).is_err());
    }
}

thread_local! {
    static FIXTURE: std::rc::Rc<(Fixture, Message, String)> = {
        let f = fixture();
        let m = hello(&f);
        let packed = f.envelopes.pack_authcrypt(&f.alice, &f.bob.did, &m).unwrap();
        std::rc::Rc::new((f, m, packed))
    };
}
