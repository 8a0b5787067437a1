//! Typed writes inside one sled transaction over all trees.

use sled::transaction::{TransactionalTree, UnabortableTransactionError};

use super::{EVENT_SEQ, T, decode, encode, key, model::*};
use crate::error::{Error, Result};
use crate::search::{self, Doc};

pub struct StoreTx<'a> {
    trees: &'a [TransactionalTree],
}

pub(super) fn tx_err(e: UnabortableTransactionError) -> Error {
    // A conflict surfaces as an abort of the whole transaction, which sled retries.
    Error::Storage(e.to_string())
}

impl<'a> StoreTx<'a> {
    pub(super) fn new(trees: &'a [TransactionalTree]) -> Self {
        StoreTx { trees }
    }

    pub(super) fn tree(&self, t: T) -> &TransactionalTree {
        &self.trees[t as usize]
    }

    pub(super) fn put<V: serde::Serialize>(&self, t: T, k: &[u8], v: &V) -> Result<()> {
        self.tree(t).insert(k, encode(v)).map_err(tx_err)?;
        Ok(())
    }

    pub(super) fn get<V: serde::de::DeserializeOwned>(&self, t: T, k: &[u8]) -> Result<Option<V>> {
        self.tree(t)
            .get(k)
            .map_err(tx_err)?
            .map(|v| decode(&v))
            .transpose()
    }

    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tree(T::Meta)
            .get(name)
            .map_err(tx_err)?
            .map(|v| v.to_vec()))
    }

    pub fn set_meta(&self, name: &str, value: &[u8]) -> Result<()> {
        self.tree(T::Meta).insert(name, value).map_err(tx_err)?;
        Ok(())
    }

    /// Inserts a wallet; fails with AlreadyExists if the id is taken.
    pub fn create_wallet(&self, w: &Wallet) -> Result<()> {
        if self.get::<Wallet>(T::Wallets, w.id.as_bytes())?.is_some() {
            return Err(Error::AlreadyExists(format!("wallet {}", w.id)));
        }
        self.put(T::Wallets, w.id.as_bytes(), w)
    }

    pub fn key(&self, wallet: &str, key_id: &str) -> Result<StoredKey> {
        self.get(T::Keys, &key(&[wallet, key_id]))?
            .ok_or_else(|| Error::not_found("key", key_id))
    }

    pub fn did(&self, wallet: &str, did: &str) -> Result<DidRecord> {
        self.get(T::Dids, &key(&[wallet, did]))?
            .ok_or_else(|| Error::not_found("DID", did))
    }

    pub fn put_key(&self, wallet: &str, k: &StoredKey) -> Result<()> {
        self.put(T::Keys, &key(&[wallet, &k.id]), k)
    }

    pub fn put_did(&self, d: &DidRecord) -> Result<()> {
        self.put(T::Dids, &key(&[&d.wallet_id, &d.did]), d)?;
        self.tree(T::DidIndex)
            .insert(d.did.as_bytes(), d.wallet_id.as_bytes())
            .map_err(tx_err)?;
        Ok(())
    }

    pub fn connection(&self, wallet: &str, id: &str) -> Result<Connection> {
        self.get(T::Connections, &key(&[wallet, id]))?
            .ok_or_else(|| Error::not_found("connection", id))
    }

    pub fn connection_by_our_did(&self, did: &str) -> Result<Option<Connection>> {
        match self
            .tree(T::ConnByDid)
            .get(did.as_bytes())
            .map_err(tx_err)?
        {
            Some(k) => self.get(T::Connections, &k),
            None => Ok(None),
        }
    }

    pub fn put_connection(&self, c: &Connection) -> Result<()> {
        let k = key(&[&c.wallet_id, &c.id]);
        self.put(T::Connections, &k, c)?;
        self.tree(T::ConnByDid)
            .insert(c.our_did.as_bytes(), k)
            .map_err(tx_err)?;
        Ok(())
    }

    /// Records `message_id` as seen for `wallet` until `keep_until_ms` (the
    /// end of its replay window); false if it was seen before.
    pub fn mark_seen(&self, wallet: &str, message_id: &str, keep_until_ms: i64) -> Result<bool> {
        let k = key(&[wallet, message_id]);
        let seen = self.tree(T::Seen);
        let prev = seen
            .insert(k.clone(), &keep_until_ms.to_be_bytes()[..])
            .map_err(tx_err)?;
        if let Some(prev) = prev {
            // Seen before (rare): its first window stands.
            seen.insert(k, prev).map_err(tx_err)?;
            return Ok(false);
        }
        self.tree(T::SeenExpiry)
            .insert(expiry_key(keep_until_ms, &k), &[][..])
            .map_err(tx_err)?;
        Ok(true)
    }

    pub fn push_inbox(&self, seq: u64, e: &InboxEntry) -> Result<()> {
        self.put(T::Inbox, &seq.to_be_bytes(), e)
    }

    pub fn remove_inbox(&self, seq: u64) -> Result<()> {
        self.tree(T::Inbox)
            .remove(&seq.to_be_bytes())
            .map_err(tx_err)?;
        Ok(())
    }

    /// Writes an outbox entry and keeps its place in the schedule index.
    pub fn put_outbox(&self, e: &OutboxEntry) -> Result<()> {
        self.remove_outbox(&e.id)?;
        self.put(T::Outbox, e.id.as_bytes(), e)?;
        self.tree(T::OutboxDue)
            .insert(due_key(e), &[][..])
            .map_err(tx_err)?;
        Ok(())
    }

    pub fn remove_outbox(&self, id: &str) -> Result<()> {
        if let Some(old) = self.tree(T::Outbox).remove(id.as_bytes()).map_err(tx_err)? {
            let old: OutboxEntry = decode(&old)?;
            self.tree(T::OutboxDue)
                .remove(due_key(&old))
                .map_err(tx_err)?;
        }
        Ok(())
    }

    /// Moves an entry that ran out of retries to the dead-letter tree.
    pub fn bury_outbox(&self, e: &OutboxEntry) -> Result<()> {
        self.remove_outbox(&e.id)?;
        self.put(T::Dead, e.id.as_bytes(), e)
    }

    // ---- issue-credential records

    pub fn record(&self, wallet: &str, id: &str) -> Result<CredentialRecord> {
        self.get(T::Records, &key(&[wallet, id]))?
            .ok_or_else(|| Error::not_found("record", id))
    }

    pub fn record_by_thid(&self, wallet: &str, thid: &str) -> Result<Option<CredentialRecord>> {
        match self
            .tree(T::ThreadIndex)
            .get(key(&[wallet, thid]))
            .map_err(tx_err)?
        {
            Some(id) => self.get(T::Records, &key(&[wallet, &String::from_utf8_lossy(&id)])),
            None => Ok(None),
        }
    }

    /// The record created earlier with this idempotency key, if any.
    pub fn record_by_idempotency(&self, wallet: &str, k: &str) -> Result<Option<CredentialRecord>> {
        match self
            .tree(T::Idempotency)
            .get(key(&[wallet, k]))
            .map_err(tx_err)?
        {
            Some(id) => self.get(T::Records, &key(&[wallet, &String::from_utf8_lossy(&id)])),
            None => Ok(None),
        }
    }

    /// The record that last claimed duplicate guard `guard` (an offer's
    /// fingerprint on a connection), if any.
    pub fn guarded_by(&self, wallet: &str, guard: &str) -> Result<Option<CredentialRecord>> {
        match self
            .tree(T::OfferGuards)
            .get(key(&[wallet, guard]))
            .map_err(tx_err)?
        {
            Some(id) => self.get(T::Records, &key(&[wallet, &String::from_utf8_lossy(&id)])),
            None => Ok(None),
        }
    }

    pub fn set_guard(&self, wallet: &str, guard: &str, record_id: &str) -> Result<()> {
        self.tree(T::OfferGuards)
            .insert(key(&[wallet, guard]), record_id.as_bytes())
            .map_err(tx_err)?;
        Ok(())
    }

    /// Writes a record and keeps its indices (thread, idempotency key,
    /// deadline) in step with it. `old` is the record as it was, if any.
    pub fn put_record(&self, old: Option<&CredentialRecord>, r: &CredentialRecord) -> Result<()> {
        self.put(T::Records, &key(&[&r.wallet_id, &r.id]), r)?;
        self.reindex(old, Some(r))?;
        let was_open = old.is_some_and(|o| !o.state.is_final());
        let is_open = !r.state.is_final();
        if was_open != is_open {
            let k = key(&[&r.wallet_id, &r.connection_id]);
            let n = self.open_records(&r.wallet_id, &r.connection_id)?;
            let n = if is_open { n + 1 } else { n.saturating_sub(1) };
            self.tree(T::OpenByConnection)
                .insert(k, &n.to_be_bytes()[..])
                .map_err(tx_err)?;
        }
        if let Some(c) = r.credential_id.as_ref().filter(|_| r.role == Role::Issuer)
            && old.and_then(|o| o.credential_id.as_ref()) != Some(c)
        {
            self.tree(T::CredentialIndex)
                .insert(key(&[&r.wallet_id, c]), r.id.as_bytes())
                .map_err(tx_err)?;
        }
        if old.is_none() {
            self.tree(T::ThreadIndex)
                .insert(key(&[&r.wallet_id, &r.thid]), r.id.as_bytes())
                .map_err(tx_err)?;
            if let Some(k) = &r.idempotency_key {
                self.tree(T::Idempotency)
                    .insert(key(&[&r.wallet_id, k]), r.id.as_bytes())
                    .map_err(tx_err)?;
            }
        }
        let old_deadline = old.and_then(|o| o.deadline_ms);
        if old_deadline != r.deadline_ms {
            if let Some(d) = old_deadline {
                self.tree(T::Deadlines)
                    .remove(deadline_key(d, r))
                    .map_err(tx_err)?;
            }
            if let Some(d) = r.deadline_ms {
                self.tree(T::Deadlines)
                    .insert(deadline_key(d, r), &[][..])
                    .map_err(tx_err)?;
            }
        }
        Ok(())
    }

    /// How many unfinished records the wallet has on the connection.
    pub fn open_records(&self, wallet: &str, connection_id: &str) -> Result<u64> {
        Ok(self
            .tree(T::OpenByConnection)
            .get(key(&[wallet, connection_id]))
            .map_err(tx_err)?
            .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])))
            .unwrap_or(0))
    }

    pub fn credential(&self, wallet: &str, id: &str) -> Result<StoredCredential> {
        self.get(T::Credentials, &key(&[wallet, id]))?
            .ok_or_else(|| Error::not_found("credential", id))
    }

    pub fn put_credential(&self, c: &StoredCredential) -> Result<()> {
        let k = key(&[&c.wallet_id, &c.id]);
        let old = self
            .tree(T::Credentials)
            .insert(k, encode(c))
            .map_err(tx_err)?;
        let old: Option<StoredCredential> = old.map(|o| decode(&o)).transpose()?;
        self.reindex(old.as_ref(), Some(c))
    }

    pub fn remove_credential(&self, wallet: &str, id: &str) -> Result<StoredCredential> {
        let old = self
            .tree(T::Credentials)
            .remove(key(&[wallet, id]))
            .map_err(tx_err)?
            .ok_or_else(|| Error::not_found("credential", id))?;
        let old: StoredCredential = decode(&old)?;
        self.reindex(Some(&old), None)?;
        Ok(old)
    }

    /// Moves a document's search index entries from its old version to its
    /// new one, touching only the entries that differ.
    pub(super) fn reindex<D: Doc>(&self, old: Option<&D>, new: Option<&D>) -> Result<()> {
        let before = old.map(search::entries).unwrap_or_default();
        let after = new.map(search::entries).unwrap_or_default();
        fn find<'e>(es: &'e [search::Entry], k: &[u8]) -> Option<&'e Vec<u8>> {
            es.binary_search_by(|(e, _)| e.as_slice().cmp(k))
                .ok()
                .map(|i| &es[i].1)
        }
        let index = self.tree(T::SearchIndex);
        for (k, _) in before.iter().filter(|(k, _)| find(&after, k).is_none()) {
            index.remove(k.as_slice()).map_err(tx_err)?;
        }
        for (k, v) in after.iter().filter(|(k, v)| find(&before, k) != Some(v)) {
            index.insert(k.as_slice(), v.as_slice()).map_err(tx_err)?;
        }
        Ok(())
    }

    /// Appends an event with the next sequence number. The counter is read
    /// and written in this transaction, so sequence order is commit order.
    pub fn push_event(&self, mut e: RecordEvent) -> Result<RecordEvent> {
        let meta = self.tree(T::Meta);
        let last = meta
            .get(EVENT_SEQ)
            .map_err(tx_err)?
            .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])))
            .unwrap_or(0);
        e.seq = last + 1;
        meta.insert(EVENT_SEQ, &e.seq.to_be_bytes()[..])
            .map_err(tx_err)?;
        self.put(T::Events, &e.seq.to_be_bytes(), &e)?;
        Ok(e)
    }
}

/// The schedule index key of an outbox entry: when it is due, then its id.
pub(super) fn due_key(e: &OutboxEntry) -> Vec<u8> {
    let mut k = due_prefix(e.next_attempt_ms);
    k.extend(e.id.as_bytes());
    k
}

/// The replay guard's expiry index key: when the entry may go, then its key.
pub(super) fn expiry_key(at_ms: i64, seen_key: &[u8]) -> Vec<u8> {
    let mut k = due_prefix(at_ms);
    k.extend_from_slice(seen_key);
    k
}

pub(super) fn due_prefix(at_ms: i64) -> Vec<u8> {
    (at_ms.max(0) as u64).to_be_bytes().to_vec()
}

fn deadline_key(at_ms: i64, r: &CredentialRecord) -> Vec<u8> {
    let mut k = (at_ms.max(0) as u64).to_be_bytes().to_vec();
    k.extend(key(&[&r.wallet_id, &r.id]));
    k
}
