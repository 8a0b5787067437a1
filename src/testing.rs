//! A `Core` over a temporary store, for unit tests that exercise handlers
//! without listeners or workers.

use std::sync::Arc;

use crate::Core;
use crate::config::Config;
use crate::crypto::{KeyStore, MasterKey};
use crate::didcomm::{Envelopes, Transport, Waiters};
use crate::protocols::Protocols;
use crate::store::{Connection, DidMethod, DidRecord, KeyType, Store};

pub struct TestCore {
    pub core: Core,
    pub protocols: Protocols,
    pub transport: Transport,
    _dir: tempfile::TempDir,
}

pub fn core() -> TestCore {
    core_with(|_| {})
}

/// As [`core`], with `configure` applied to the default config.
pub fn core_with(configure: impl FnOnce(&mut Config)) -> TestCore {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = Config::default();
    config.grpc.auth = "none".into();
    configure(&mut config);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("db")).expect("store");
    let keys = KeyStore::open(MasterKey::from_bytes([7; 32]), store.clone()).expect("keys");
    let core = Core {
        envelopes: Envelopes::new(keys.clone(), store.clone(), config.didcomm.limits.clone()),
        store,
        keys,
        config: Arc::new(config),
        endpoint: "http://127.0.0.1:9/didcomm".into(),
        inbox_wake: Default::default(),
        outbox: Default::default(),
        waiters: Waiters::default(),
        events: Default::default(),
        metrics: Default::default(),
    };
    crate::wallet::ensure_default(&core).expect("default wallet");
    let protocols = Protocols::new(&core);
    let transport = Transport::new(core.clone(), Arc::new(protocols.clone())).expect("transport");
    TestCore {
        core,
        protocols,
        transport,
        _dir: dir,
    }
}

impl TestCore {
    /// A new DID of `method` in `wallet` (created if missing), Ed25519.
    pub fn did(&self, wallet: &str, method: DidMethod) -> DidRecord {
        self.did_key_of(wallet, method, KeyType::Ed25519)
    }

    /// A new DID of `method` with a signing key of `key_type`.
    pub fn did_key_of(&self, wallet: &str, method: DidMethod, key_type: KeyType) -> DidRecord {
        let _ = crate::wallet::create_wallet(&self.core, wallet, "");
        crate::wallet::create_did(&self.core, wallet, method, key_type, "user").expect("DID")
    }
}

impl TestCore {
    /// Delivers queued messages and handles received ones until nothing is
    /// left to do, as the workers would (all recipients are local).
    pub async fn drain(&self) {
        let core = &self.core;
        for _ in 0..100 {
            let out = core.store.outbox_all().expect("outbox");
            let inbox = core.store.inbox_batch(256).expect("inbox");
            if out.is_empty() && inbox.is_empty() {
                return;
            }
            crate::didcomm::outbox::attempt(&self.transport, out).await;
            crate::didcomm::inbox::process(&self.transport, inbox).await;
        }
        panic!("messages still flowing after 100 rounds");
    }

    /// An active connection between wallets `a` (inviter) and `b`, each
    /// created if missing. Returns (a's connection, b's).
    pub async fn connect(&self, a: &str, b: &str) -> (Connection, Connection) {
        use crate::protocols::connections;
        for w in [a, b] {
            let _ = crate::wallet::create_wallet(&self.core, w, "");
        }
        let inv = connections::create_invitation(&self.core, a, "", "", "").expect("invitation");
        let theirs = connections::accept_invitation(&self.core, b, &inv.url, "")
            .await
            .expect("accept");
        self.drain().await;
        let ours = self
            .core
            .store
            .connection(a, &inv.connection.id)
            .expect("connection");
        let theirs = self
            .core
            .store
            .connection(b, &theirs.id)
            .expect("connection");
        assert_eq!(ours.state, crate::store::ConnectionState::Active);
        (ours, theirs)
    }
}

/// Any JSON value, nested a few levels.
pub fn any_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~]{0,40}".prop_map(Value::from),
        Just(Value::from("{1}{2}{3}")),
        Just(Value::from("*")),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_-]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
