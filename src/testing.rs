//! A `Core` over a temporary store, for unit tests that exercise handlers
//! without listeners or workers.

use std::sync::Arc;

use crate::Core;
use crate::config::Config;
use crate::crypto::{KeyStore, MasterKey};
use crate::didcomm::{Envelopes, Waiters};
use crate::store::{DidMethod, DidRecord, Store};

pub struct TestCore {
    pub core: Core,
    _dir: tempfile::TempDir,
}

pub fn core() -> TestCore {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("db")).expect("store");
    let keys = KeyStore::open(MasterKey::from_bytes([7; 32]), store.clone()).expect("keys");
    let core = Core {
        envelopes: Envelopes::new(keys.clone(), store.clone()),
        store,
        keys,
        config: Arc::new(Config::default()),
        endpoint: "http://127.0.0.1:9/didcomm".into(),
        inbox_wake: Default::default(),
        outbox_wake: Default::default(),
        waiters: Waiters::default(),
        events: Default::default(),
        http: reqwest::Client::new(),
    };
    crate::wallet::ensure_default(&core).expect("default wallet");
    TestCore { core, _dir: dir }
}

impl TestCore {
    /// A new DID of `method` in `wallet` (created if missing).
    pub fn did(&self, wallet: &str, method: DidMethod) -> DidRecord {
        let _ = crate::wallet::create_wallet(&self.core, wallet, "");
        crate::wallet::create_did(&self.core, wallet, method).expect("DID")
    }
}
