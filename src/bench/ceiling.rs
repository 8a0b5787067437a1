//! The crypto ceiling: how many flows per second the cryptography alone
//! allows on this machine. Per flow it does what a flow must do at least:
//! four authcrypt packs and unpacks (offer, request, credential, ack) with
//! peer DIDs, and one VC-JWT sign and verify, on every core, with no network
//! and no writes.

use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::config::Limits;
use crate::crypto::{KeyStore, MasterKey};
use crate::didcomm::{Envelopes, Message};
use crate::error::{Error, Result};
use crate::store::{
    Connection, ConnectionRole, ConnectionState, DidMethod, DidRecord, Store, StoredKey,
};
use crate::vc::{self, CredentialSpec};
use crate::wallet;

/// The parties of one flow, with their keys in a scratch store.
struct Parties {
    envelopes: Envelopes,
    keys: KeyStore,
    issuer: DidRecord,
    holder: DidRecord,
    signer: DidRecord,
    signer_key: StoredKey,
    body: Value,
    claims: Map<String, Value>,
}

impl Parties {
    fn new(store: Store) -> Result<Parties> {
        let mut master = [0u8; 32];
        rand::fill(&mut master[..]);
        let keys = KeyStore::open(MasterKey::from_bytes(master), store.clone())?;
        let did = |w: &str, method| -> Result<DidRecord> {
            let new = wallet::new_did(&keys, "http://127.0.0.1:9/didcomm", w, method, "bench");
            store.transact(|tx| wallet::put_did(tx, &new))?;
            Ok(new.record)
        };
        let issuer = did("issuer", DidMethod::Peer2)?;
        let holder = did("holder", DidMethod::Peer2)?;
        // A real agent hears only a connection's peer: connect the two.
        for (ours, theirs) in [(&issuer, &holder), (&holder, &issuer)] {
            store.transact(|tx| {
                tx.put_connection(&Connection {
                    id: uuid::Uuid::new_v4().to_string(),
                    wallet_id: ours.wallet_id.clone(),
                    state: ConnectionState::Active,
                    role: ConnectionRole::Inviter,
                    our_did: ours.did.clone(),
                    their_did: Some(theirs.did.clone()),
                    invitation_id: String::new(),
                    label: "bench".into(),
                    created_at_ms: 0,
                    updated_at_ms: 0,
                    problem: None,
                    offer_thid: None,
                })
            })?;
        }
        let signer = did("issuer", DidMethod::Key)?;
        let signer_key = store.key("issuer", &signer.signing_key_id)?;
        let claims: Map<String, Value> = serde_json::from_value(json!({
            "name": "Alice Example", "degree": "BSc Computer Science", "year": "2026"
        }))
        .expect("an object");
        Ok(Parties {
            envelopes: Envelopes::new(keys.clone(), store, Limits::default()),
            keys,
            issuer,
            holder,
            signer,
            signer_key,
            // About the size of an offer's or a credential message's body.
            body: json!({ "goal_code": "issue-vc", "comment": "x".repeat(600), "claims": claims }),
            claims,
        })
    }

    /// One flow's worth of cryptography.
    fn flow(&self, n: u64) -> Result<()> {
        let pairs = [
            (&self.issuer, &self.holder),
            (&self.holder, &self.issuer),
            (&self.issuer, &self.holder),
            (&self.holder, &self.issuer),
        ];
        for (from, to) in pairs {
            let mut msg = Message::new(
                "https://didcomm.org/issue-credential/3.0/bench",
                self.body.clone(),
            );
            msg.from = Some(from.did.clone());
            msg.to = vec![to.did.clone()];
            let packed = self.envelopes.pack_authcrypt(from, &to.did, &msg)?;
            let opened = self.envelopes.unpack(packed.as_bytes())?;
            debug_assert_eq!(opened.message.id, msg.id);
        }
        let id = format!("urn:uuid:bench-{n}");
        let jwt = vc::issue(
            &self.keys,
            &self.signer,
            &self.signer_key,
            &CredentialSpec {
                id: &id,
                types: &[],
                contexts: &[],
                subject: &self.holder.did,
                claims: &self.claims,
                schema_id: None,
                issued_at: crate::now_secs(),
                validity_secs: 0,
                status: None,
            },
        )
        .map_err(internal)?;
        vc::verify_jwt(&jwt).map_err(internal)?;
        Ok(())
    }
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// The ceiling in flows per second: `flows` flows' cryptography spread over
/// `threads` threads.
pub fn measure(flows: u64, threads: usize) -> Result<f64> {
    let dir = tempfile::tempdir().map_err(internal)?;
    let parties = Parties::new(Store::open(&dir.path().join("db"))?)?;
    // Warm caches (sled pages of the keys, allocator) before timing.
    for n in 0..10 {
        parties.flow(n)?;
    }
    let threads = threads.max(1) as u64;
    let start = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let parties = &parties;
                s.spawn(move || -> Result<()> {
                    for n in (t..flows).step_by(threads as usize) {
                        parties.flow(n)?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("ceiling worker panicked"))
    })?;
    Ok(flows as f64 / start.elapsed().as_secs_f64())
}
