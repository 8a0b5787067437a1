//! Storage: one sled database, one tree per record kind, typed access only.
//!
//! Reads go through the `Store` methods; writes that must land together go
//! through [`Store::transact`], which runs one sled transaction over every
//! tree. [`Store::durable`] flushes with group commit: callers waiting at the
//! same time share one `flush_async`, and [`GroupCommit`] lets concurrent
//! callers share one transaction.

mod backup;
mod files;
mod flush;
mod group;
mod model;
mod records;
mod search;
mod status;
mod templates;
mod tokens;
mod trust;
mod tx;

pub use backup::Entry;
use files::private_files;
pub use files::{private_dir, rename_durably};
pub use flush::Flushed;
use flush::Flusher;
pub use group::GroupCommit;
pub use model::*;
pub(crate) use search::IndexEntries;
pub use tx::StoreTx;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use sled::Transactional;
use sled::Tree;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use crate::error::{Error, Result};

/// The trees, in the order [`StoreTx`] sees them.
#[derive(Clone, Copy)]
#[repr(usize)]
enum T {
    Meta,
    Wallets,
    Keys,
    Dids,
    DidIndex,
    Connections,
    ConnByDid,
    Inbox,
    Seen,
    SeenExpiry,
    Outbox,
    OutboxDue,
    Dead,
    Records,
    OpenByConnection,
    ThreadIndex,
    Idempotency,
    Deadlines,
    Credentials,
    Events,
    Tokens,
    TokenHashes,
    StatusLists,
    StatusBits,
    CredentialIndex,
    TrustedIssuers,
    Templates,
    OfferGuards,
    SearchIndex,
}

const TREE_NAMES: [&str; 29] = [
    "meta",
    "wallets",
    "keys",
    "dids",
    "did_index",
    "connections",
    "conn_by_did",
    "inbox",
    "seen",
    "seen_expiry",
    "outbox",
    "outbox_due",
    "dead",
    "records",
    "open_by_connection",
    "thread_index",
    "idempotency",
    "deadlines",
    "credentials",
    "events",
    "tokens",
    "token_hashes",
    "status_lists",
    "status_bits",
    "credential_index",
    "trusted_issuers",
    "templates",
    "offer_guards",
    "search_index",
];

/// The meta key of the last event sequence number.
const EVENT_SEQ: &str = "event_seq";
/// The meta key of the search index's version.
const SEARCH_INDEX: &str = "search_index";
/// The meta key of the id floor a restore sets: sled numbers ids from 0 in
/// a new database, and ids must go on rising past the restored ones.
const ID_FLOOR: &str = "id_floor";

/// Page size bounds for every list call.
pub const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 20;

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    trees: Vec<Tree>,
    flusher: Flusher,
    /// Writes hold it shared; a snapshot holds it alone, so that it sees
    /// every tree at one point.
    gate: std::sync::RwLock<()>,
    id_floor: u64,
    path: std::path::PathBuf,
}

/// A page of results and the token for the next one (empty at the end).
pub struct Page<V> {
    pub items: Vec<V>,
    pub next_token: String,
}

fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("\0").into_bytes()
}

fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<V> {
    serde_json::from_slice(bytes).map_err(|e| Error::Storage(format!("corrupt record: {e}")))
}

fn encode<V: serde::Serialize>(v: &V) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

/// sled's own default cache size, in MiB (`storage.cache_mib`).
pub const DEFAULT_CACHE_MIB: u64 = 1024;

impl Store {
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_cache(path, DEFAULT_CACHE_MIB)
    }

    /// As [`Store::open`], keeping up to `cache_mib` MiB of the database in
    /// memory.
    pub fn open_with_cache(path: &Path, cache_mib: u64) -> Result<Self> {
        // Claims and credentials are stored in the clear: only we may read
        // them (the data directory 0700, its files 0600).
        private_dir(path, true).map_err(|e| Error::Storage(format!("{}: {e}", path.display())))?;
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_mib.saturating_mul(1 << 20))
            .open()?;
        Self::on(db, path)
    }

    /// The store over an open database: its trees, and whatever an older
    /// database lacks built.
    fn on(db: sled::Db, path: &Path) -> Result<Self> {
        private_files(path).map_err(|e| Error::Storage(format!("{}: {e}", path.display())))?;
        let trees = TREE_NAMES
            .iter()
            .map(|n| db.open_tree(n))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let id_floor = trees[T::Meta as usize]
            .get(ID_FLOOR)?
            .map_or(0, |v| seq_of(&v));
        let store = Store {
            inner: Arc::new(Inner {
                flusher: Flusher::new(db.clone()),
                db,
                trees,
                gate: Default::default(),
                id_floor,
                path: path.to_path_buf(),
            }),
        };
        store.index_outbox()?;
        store.index_seen()?;
        store.count_open_records()?;
        store.index_for_search()?;
        Ok(store)
    }

    /// A database written before unfinished records were counted per
    /// connection gets its counts.
    fn count_open_records(&self) -> Result<()> {
        if !self.tree(T::OpenByConnection).is_empty() || self.tree(T::Records).is_empty() {
            return Ok(());
        }
        let mut counts: std::collections::HashMap<Vec<u8>, u64> = Default::default();
        for v in self.tree(T::Records).iter().values() {
            let r: CredentialRecord = decode(&v?)?;
            if !r.state.is_final() {
                *counts
                    .entry(key(&[&r.wallet_id, &r.connection_id]))
                    .or_default() += 1;
            }
        }
        self.writing(|| {
            for (k, n) in &counts {
                self.tree(T::OpenByConnection).insert(k, &n.to_be_bytes())?;
            }
            Ok(())
        })
    }

    /// A database written before the replay guard expired its entries: they
    /// are kept for one more replay window from now.
    fn index_seen(&self) -> Result<()> {
        if !self.tree(T::SeenExpiry).is_empty() || self.tree(T::Seen).is_empty() {
            return Ok(());
        }
        let until = crate::now_ms() + 48 * 3600 * 1000;
        self.writing(|| {
            for k in self.tree(T::Seen).iter().keys() {
                let k = k?;
                self.tree(T::Seen).insert(&k, &until.to_be_bytes())?;
                self.tree(T::SeenExpiry)
                    .insert(tx::expiry_key(until, &k), &[][..])?;
            }
            Ok(())
        })
    }

    /// A database written before the outbox had its schedule index gets one.
    fn index_outbox(&self) -> Result<()> {
        if !self.tree(T::OutboxDue).is_empty() || self.tree(T::Outbox).is_empty() {
            return Ok(());
        }
        self.writing(|| {
            for v in self.tree(T::Outbox).iter().values() {
                let e: OutboxEntry = decode(&v?)?;
                self.tree(T::OutboxDue).insert(tx::due_key(&e), &[][..])?;
            }
            Ok(())
        })
    }

    fn tree(&self, t: T) -> &Tree {
        &self.inner.trees[t as usize]
    }

    /// Runs `f` as one atomic sled transaction over all trees. `f` may run
    /// more than once on conflict, so it must only touch the transaction.
    pub fn transact<R>(&self, f: impl Fn(&StoreTx) -> Result<R>) -> Result<R> {
        let r = self.writing(|| {
            self.inner.trees.as_slice().transaction(
                |trees: &Vec<TransactionalTree>| -> std::result::Result<R, ConflictableTransactionError<Error>> {
                    f(&StoreTx::new(trees)).map_err(ConflictableTransactionError::Abort)
                },
            )
        })?;
        Ok(r)
    }

    /// Every write runs inside this, numbered, so [`Store::durable`] knows
    /// which writes a flush has covered.
    fn writing<R>(&self, write: impl FnOnce() -> R) -> R {
        // A poisoned gate only means a writer panicked; the trees are sled's.
        let _gate = self
            .inner
            .gate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = self.inner.flusher.begin();
        let r = write();
        self.inner.flusher.end(n);
        r
    }

    /// Runs `f` for every item in one transaction; if any item fails, runs
    /// each in its own, so only the failing ones fail. One result per item.
    pub fn transact_each<I, R>(
        &self,
        items: &[I],
        f: impl Fn(&StoreTx, &I) -> Result<R>,
    ) -> Vec<Result<R>> {
        match self.transact(|tx| items.iter().map(|i| f(tx, i)).collect::<Result<Vec<R>>>()) {
            Ok(all) => all.into_iter().map(Ok).collect(),
            Err(_) => items.iter().map(|i| self.transact(|tx| f(tx, i))).collect(),
        }
    }

    /// Returns once everything committed before the call, and so
    /// everything the caller has read, is on disk. Concurrent callers share
    /// a flush: the one holding the lock flushes for all. When every write
    /// begun so far is covered by a completed flush, it returns at once.
    pub async fn durable(&self) -> Result<Flushed> {
        self.durable_within(Duration::ZERO).await
    }

    /// As [`Store::durable`], but waits up to `patience` for a flush that
    /// someone else starts before flushing itself: for work that is not in
    /// a hurry (delivery bookkeeping), so that it adds no flush of its own
    /// while others flush anyway.
    pub async fn durable_within(&self, patience: Duration) -> Result<Flushed> {
        self.inner.flusher.durable_within(patience).await
    }

    /// Holds every flush back until the guard is dropped, so a test can
    /// look at what happens while commits are not yet durable.
    #[cfg(test)]
    pub(crate) async fn hold_flushes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.flusher.hold().await
    }

    /// Tells `f` how long each group-commit flush took (once; later calls
    /// are ignored).
    pub fn on_flush(&self, f: impl Fn(Duration) + Send + Sync + 'static) {
        self.inner.flusher.observe(Box::new(f));
    }

    /// Flushes synchronously; used at shutdown.
    pub fn flush(&self) -> Result<()> {
        self.inner.db.flush()?;
        Ok(())
    }

    /// A new id, greater than every id handed out before (also before a
    /// restore into this database).
    pub fn next_id(&self) -> Result<u64> {
        Ok(self.inner.id_floor + self.inner.db.generate_id()?)
    }

    fn get<V: DeserializeOwned>(&self, t: T, k: &[u8]) -> Result<Option<V>> {
        self.tree(t).get(k)?.map(|v| decode(&v)).transpose()
    }

    fn page<V: DeserializeOwned>(
        &self,
        t: T,
        prefix: &[u8],
        page_size: u32,
        token: &str,
        keep: impl Fn(&V) -> bool,
    ) -> Result<Page<V>> {
        let size = match page_size as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let start = if token.is_empty() {
            prefix.to_vec()
        } else {
            let mut last = URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .filter(|k| k.starts_with(prefix))
                .ok_or_else(|| Error::InvalidArgument("page_token is not valid here".into()))?;
            last.push(0);
            last
        };
        let mut items = Vec::new();
        let mut last_key = None;
        for kv in self.tree(t).range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(prefix) {
                break;
            }
            let v: V = decode(&v)?;
            if keep(&v) {
                if items.len() == size {
                    return Ok(Page {
                        items,
                        next_token: last_key
                            .map(|k| URL_SAFE_NO_PAD.encode(k))
                            .unwrap_or_default(),
                    });
                }
                items.push(v);
                last_key = Some(k);
            }
        }
        Ok(Page {
            items,
            next_token: String::new(),
        })
    }

    // ---- meta

    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.tree(T::Meta).get(name)?.map(|v| v.to_vec()))
    }

    /// How a peer DID spells key ids (a `did::KidForm` name), if it told us.
    pub fn peer_kid_form(&self, peer: &str) -> Result<Option<String>> {
        let name = key(&["kid_form", peer]);
        let form = self.tree(T::Meta).get(name)?;
        Ok(form.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records how a connected peer spells key ids. Outside any transaction:
    /// a form lost in a crash is learnt again from the peer's next message.
    pub fn set_peer_kid_form(&self, peer: &str, form: &str) -> Result<()> {
        self.writing(|| {
            self.tree(T::Meta)
                .insert(key(&["kid_form", peer]), form.as_bytes())
        })?;
        Ok(())
    }

    // ---- wallets

    pub fn wallet(&self, id: &str) -> Result<Wallet> {
        self.get(T::Wallets, id.as_bytes())?
            .ok_or_else(|| Error::not_found("wallet", id))
    }

    pub fn wallets(&self, page_size: u32, token: &str) -> Result<Page<Wallet>> {
        self.page(T::Wallets, b"", page_size, token, |_| true)
    }

    // ---- keys

    pub fn key(&self, wallet: &str, key_id: &str) -> Result<StoredKey> {
        self.get(T::Keys, &key(&[wallet, key_id]))?
            .ok_or_else(|| Error::not_found("key", key_id))
    }

    // ---- DIDs

    pub fn did(&self, wallet: &str, did: &str) -> Result<DidRecord> {
        self.get(T::Dids, &key(&[wallet, did]))?
            .ok_or_else(|| Error::not_found("DID", did))
    }

    /// Which wallet holds `did`, if any wallet of this daemon does.
    pub fn did_owner(&self, did: &str) -> Result<Option<DidRecord>> {
        match self.tree(T::DidIndex).get(did)? {
            Some(wallet) => self.get(T::Dids, &key(&[&String::from_utf8_lossy(&wallet), did])),
            None => Ok(None),
        }
    }

    pub fn dids(&self, wallet: &str, page_size: u32, token: &str) -> Result<Page<DidRecord>> {
        self.page(T::Dids, &key(&[wallet, ""]), page_size, token, |_| true)
    }

    // ---- connections

    pub fn connection(&self, wallet: &str, id: &str) -> Result<Connection> {
        self.get(T::Connections, &key(&[wallet, id]))?
            .ok_or_else(|| Error::not_found("connection", id))
    }

    /// The connection that uses our DID `did` (each connection has its own).
    pub fn connection_by_our_did(&self, did: &str) -> Result<Option<Connection>> {
        match self.tree(T::ConnByDid).get(did)? {
            Some(k) => self.get(T::Connections, &k),
            None => Ok(None),
        }
    }

    pub fn connections(
        &self,
        wallet: &str,
        page_size: u32,
        token: &str,
        keep: impl Fn(&Connection) -> bool,
    ) -> Result<Page<Connection>> {
        self.page(T::Connections, &key(&[wallet, ""]), page_size, token, keep)
    }

    // ---- inbox and outbox

    /// Inbox entries in arrival order, with their sequence keys.
    pub fn inbox_batch(&self, limit: usize) -> Result<Vec<(u64, InboxEntry)>> {
        self.tree(T::Inbox)
            .iter()
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((seq_of(&k), decode(&v)?))
            })
            .collect()
    }

    pub fn outbox_all(&self) -> Result<Vec<OutboxEntry>> {
        self.tree(T::Outbox)
            .iter()
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    /// Up to `limit` entries due at `now_ms`, earliest first, leaving out
    /// those `skip` names (being sent). Reads only the schedule index and
    /// the entries it returns.
    pub fn outbox_due(
        &self,
        now_ms: i64,
        limit: usize,
        skip: impl Fn(&str) -> bool,
    ) -> Result<Vec<OutboxEntry>> {
        let end = tx::due_prefix(now_ms + 1);
        let mut due = Vec::new();
        for k in self.tree(T::OutboxDue).range(..end).keys() {
            let k = k?;
            let id = String::from_utf8_lossy(&k[8..]);
            if skip(&id) {
                continue;
            }
            if let Some(e) = self.get(T::Outbox, id.as_bytes())? {
                due.push(e);
                if due.len() == limit {
                    break;
                }
            }
        }
        Ok(due)
    }

    /// When the first entry scheduled after `now_ms` is due, if any.
    pub fn outbox_next_due_after(&self, now_ms: i64) -> Result<Option<i64>> {
        let start = tx::due_prefix(now_ms + 1);
        Ok(self
            .tree(T::OutboxDue)
            .range(start..)
            .keys()
            .next()
            .transpose()?
            .map(|k| seq_of(&k[..8]) as i64))
    }

    pub fn dead_letters(&self) -> Result<Vec<OutboxEntry>> {
        self.tree(T::Dead)
            .iter()
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    /// Total number of records of every kind; tests use it to prove that
    /// rejected input stored nothing.
    pub fn record_count(&self) -> usize {
        self.inner.trees.iter().map(|t| t.len()).sum()
    }
}

fn seq_of(k: &[u8]) -> u64 {
    u64::from_be_bytes(k.try_into().unwrap_or([0; 8]))
}
