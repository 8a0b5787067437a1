//! Reads of issue-credential records, held credentials and record events.

use super::*;

impl Store {
    // ---- issue-credential records and credentials

    pub fn record(&self, wallet: &str, id: &str) -> Result<CredentialRecord> {
        self.get(T::Records, &key(&[wallet, id]))?
            .ok_or_else(|| Error::not_found("record", id))
    }

    pub fn records(
        &self,
        wallet: &str,
        page_size: u32,
        token: &str,
        keep: impl Fn(&CredentialRecord) -> bool,
    ) -> Result<Page<CredentialRecord>> {
        self.page(T::Records, &key(&[wallet, ""]), page_size, token, keep)
    }

    /// The wallet's record of thread `thid`, if any.
    pub fn record_by_thid(&self, wallet: &str, thid: &str) -> Result<Option<CredentialRecord>> {
        match self.tree(T::ThreadIndex).get(key(&[wallet, thid]))? {
            Some(id) => self.get(T::Records, &key(&[wallet, &String::from_utf8_lossy(&id)])),
            None => Ok(None),
        }
    }

    pub fn credential(&self, wallet: &str, id: &str) -> Result<StoredCredential> {
        self.get(T::Credentials, &key(&[wallet, id]))?
            .ok_or_else(|| Error::not_found("credential", id))
    }

    pub fn credentials(
        &self,
        wallet: &str,
        page_size: u32,
        token: &str,
        keep: impl Fn(&StoredCredential) -> bool,
    ) -> Result<Page<StoredCredential>> {
        self.page(T::Credentials, &key(&[wallet, ""]), page_size, token, keep)
    }

    /// The first credential of `wallet` that `keep` accepts.
    pub fn find_credential(
        &self,
        wallet: &str,
        keep: impl Fn(&StoredCredential) -> bool,
    ) -> Result<Option<StoredCredential>> {
        for v in self
            .tree(T::Credentials)
            .scan_prefix(key(&[wallet, ""]))
            .values()
        {
            let c: StoredCredential = decode(&v?)?;
            if keep(&c) {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// Records whose deadline is at or before `now_ms`: (wallet, record id).
    pub fn due_records(&self, now_ms: i64, limit: usize) -> Result<Vec<(String, String)>> {
        let end = (now_ms.max(0) as u64 + 1).to_be_bytes();
        self.tree(T::Deadlines)
            .range(..end.as_slice())
            .take(limit)
            .map(|kv| {
                let (k, _) = kv?;
                let rest = String::from_utf8_lossy(&k[8..]).into_owned();
                let (wallet, id) = rest.split_once('\0').unwrap_or_default();
                Ok((wallet.to_string(), id.to_string()))
            })
            .collect()
    }

    // ---- events

    /// The sequence number of the last committed event (0: none yet).
    pub fn last_event_seq(&self) -> Result<u64> {
        Ok(self
            .tree(T::Meta)
            .get(EVENT_SEQ)?
            .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])))
            .unwrap_or(0))
    }

    /// Stored events with `seq > after`, oldest first.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<RecordEvent>> {
        self.tree(T::Events)
            .range((after + 1).to_be_bytes()..)
            .values()
            .take(limit)
            .map(|v| decode(&v?))
            .collect()
    }

    /// Forgets message ids whose replay window ended before `now_ms`, at
    /// most `limit` of them; returns how many.
    pub fn prune_seen(&self, now_ms: i64, limit: usize) -> Result<usize> {
        let end = tx::due_prefix(now_ms + 1);
        let expired: Vec<sled::IVec> = self
            .tree(T::SeenExpiry)
            .range(..end)
            .keys()
            .take(limit)
            .collect::<std::result::Result<_, _>>()?;
        self.writing(|| {
            for k in &expired {
                self.tree(T::Seen).remove(&k[8..])?;
                self.tree(T::SeenExpiry).remove(k)?;
            }
            Ok(expired.len())
        })
    }

    /// Drops dead letters older than `max_age_ms`, then the oldest until at
    /// most `keep` remain; returns how many went.
    pub fn prune_dead(&self, now_ms: i64, max_age_ms: i64, keep: usize) -> Result<usize> {
        let mut all: Vec<(i64, sled::IVec)> = Vec::new();
        for kv in self.tree(T::Dead).iter() {
            let (k, v) = kv?;
            let e: OutboxEntry = decode(&v)?;
            all.push((e.created_at_ms, k));
        }
        all.sort();
        let old = all
            .iter()
            .filter(|(at, _)| *at < now_ms - max_age_ms)
            .count();
        let drop = old.max(all.len().saturating_sub(keep));
        self.writing(|| {
            for (_, k) in &all[..drop] {
                self.tree(T::Dead).remove(k)?;
            }
            Ok(drop)
        })
    }

    /// Drops the oldest events so at most `keep` remain.
    pub fn prune_events(&self, keep: usize) -> Result<usize> {
        let tree = self.tree(T::Events);
        let excess = tree.len().saturating_sub(keep);
        self.writing(|| {
            let mut removed = 0;
            for k in tree.iter().keys().take(excess) {
                tree.remove(k?)?;
                removed += 1;
            }
            Ok(removed)
        })
    }

    /// Counts by walking the tree: O(waiting messages).
    pub fn inbox_len(&self) -> usize {
        self.tree(T::Inbox).len()
    }

    pub fn inbox_is_empty(&self) -> bool {
        self.tree(T::Inbox).is_empty()
    }

    pub fn outbox_len(&self) -> usize {
        self.tree(T::Outbox).len()
    }

    // ---- what metrics read

    /// Records by role and state: reads every record (once, at start).
    pub fn record_states(&self) -> Result<std::collections::HashMap<(Role, RecordState), i64>> {
        #[derive(serde::Deserialize)]
        struct Head {
            role: Role,
            state: RecordState,
        }
        let mut counts = std::collections::HashMap::new();
        for v in self.tree(T::Records).iter().values() {
            let h: Head = decode(&v?)?;
            *counts.entry((h.role, h.state)).or_default() += 1;
        }
        Ok(counts)
    }

    /// Outbox entries, and when the oldest was made (None: empty).
    pub fn outbox_depth_and_oldest(&self) -> Result<(usize, Option<i64>)> {
        let all = self.outbox_all()?;
        Ok((all.len(), all.iter().map(|e| e.created_at_ms).min()))
    }

    pub fn dead_letter_count(&self) -> usize {
        self.tree(T::Dead).len()
    }

    pub fn size_on_disk(&self) -> u64 {
        self.inner.db.size_on_disk().unwrap_or(0)
    }
}
