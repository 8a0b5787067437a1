//! The search index tree: read by `crate::search`, written with each record,
//! credential, template and token (`StoreTx::put_record`, `put_credential`,
//! `put_template`, `put_token`).

use std::ops::Bound;

use super::*;
use crate::search::{self, Doc, Kind};

/// Documents indexed, or keys removed, per batch when the index is built
/// at open.
const BUILD_BATCH: usize = 1_000;

/// Index entries (key, value) in key order, either way.
pub(crate) type IndexEntries = Box<dyn Iterator<Item = Result<(sled::IVec, sled::IVec)>> + Send>;

impl Store {
    /// Index keys between `lo` and `hi`, ascending or descending.
    pub(crate) fn index_range(
        &self,
        lo: Bound<Vec<u8>>,
        hi: Bound<Vec<u8>>,
        descending: bool,
    ) -> IndexEntries {
        let entries = self.tree(T::SearchIndex).range((lo, hi));
        let entries = entries.map(|e| e.map_err(Error::from));
        if descending {
            Box::new(entries.rev())
        } else {
            Box::new(entries)
        }
    }

    /// A database written before the search index, or with older keys
    /// for some kind, gets that kind's part of the index (re)built from
    /// its documents. Each kind's version is kept under
    /// `search_index.<kind>`; a database from before per-kind versions
    /// has one, `search_index`, which covered records and credentials.
    pub(super) fn index_for_search(&self) -> Result<()> {
        let meta = self.tree(T::Meta);
        let legacy = meta.get(SEARCH_INDEX)?;
        let mut built = false;
        for kind in Kind::ALL {
            let key = format!("{SEARCH_INDEX}.{}", kind.noun());
            let stored = match meta.get(&key)? {
                Some(v) => Some(v),
                None if matches!(kind, Kind::Records | Kind::Credentials) => legacy.clone(),
                None => None,
            };
            let version = search::index_version(kind);
            if stored.as_deref() == Some(version.as_bytes()) {
                continue;
            }
            self.clear_index_of(kind)?;
            match kind {
                Kind::Records => self.index_all::<CredentialRecord>(T::Records)?,
                Kind::Credentials => self.index_all::<StoredCredential>(T::Credentials)?,
                Kind::Templates => self.index_all::<Template>(T::Templates)?,
                Kind::Tokens => self.index_all::<Token>(T::Tokens)?,
            }
            meta.insert(key.as_bytes(), version.as_bytes())?;
            built = true;
        }
        if built { self.flush() } else { Ok(()) }
    }

    /// Removes every index key of `kind`.
    fn clear_index_of(&self, kind: Kind) -> Result<()> {
        let keys = self
            .tree(T::SearchIndex)
            .scan_prefix(search::kind_prefix(kind));
        self.index_in_batches(keys.keys(), |batch, k| {
            batch.remove(k);
            Ok(())
        })
    }

    fn index_all<D: Doc + serde::de::DeserializeOwned>(&self, t: T) -> Result<()> {
        self.index_in_batches(self.tree(t).iter().values(), |batch, v| {
            let d: D = decode(&v)?;
            for (k, v) in search::entries(&d) {
                batch.insert(k, v);
            }
            Ok(())
        })
    }

    /// Writes to the index what `add` makes of each item, `BUILD_BATCH`
    /// items to a batch.
    fn index_in_batches(
        &self,
        items: impl Iterator<Item = sled::Result<sled::IVec>>,
        add: impl Fn(&mut sled::Batch, sled::IVec) -> Result<()>,
    ) -> Result<()> {
        let index = self.tree(T::SearchIndex);
        let mut batch = sled::Batch::default();
        for (n, item) in items.enumerate() {
            add(&mut batch, item?)?;
            if (n + 1) % BUILD_BATCH == 0 {
                self.writing(|| index.apply_batch(std::mem::take(&mut batch)))?;
            }
        }
        self.writing(|| index.apply_batch(batch))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::{ACROSS_WALLETS, Filter, Query};

    fn template() -> Template {
        Template {
            id: "t1".into(),
            wallet_id: "w".into(),
            name: "Degree".into(),
            types: vec!["UniversityDegree".into()],
            contexts: vec![],
            schema: serde_json::json!({"type": "object"}),
            default_validity_secs: 0,
            max_validity_secs: 0,
            issuer_did: None,
            created_at_ms: 1,
            created_by: String::new(),
            archived_at_ms: None,
        }
    }

    fn token() -> Token {
        Token {
            id: "k1".into(),
            wallet_id: "w".into(),
            role: TokenRole::Admin,
            label: "bootstrap".into(),
            hash: vec![1; 32],
            rate_per_sec: 0,
            created_at_ms: 1,
            created_by: "bootstrap".into(),
            revoked_at_ms: None,
        }
    }

    /// A store with one template and one token, whose index and meta are
    /// then set by `age` (as an older version left them), reopened.
    fn reopened(age: impl Fn(&Store)) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = Store::open(&path).unwrap();
            store
                .transact(|tx| {
                    tx.put_template(&template())?;
                    tx.put_token(&token())
                })
                .unwrap();
            age(&store);
            store.flush().unwrap();
        }
        // sled's I/O threads can hold the closed database's file lock a
        // moment past its drop (a CI run once lost that race).
        let store = (0..100)
            .find_map(|_| match Store::open(&path) {
                Ok(store) => Some(store),
                Err(e) if e.to_string().contains("could not acquire lock") => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    None
                }
                Err(e) => panic!("{e}"),
            })
            .expect("the lock is released within 5 s");
        (dir, store)
    }

    fn found(store: &Store) -> (Vec<Template>, Vec<Token>) {
        let q = |kind, field, value| Query::default().and(Filter::eq(kind, field, value).unwrap());
        let templates =
            search::run::<Template>(store, "w", &q(Kind::Templates, "name", "Degree"), 20, "", 2)
                .unwrap();
        let tokens = search::run::<Token>(
            store,
            ACROSS_WALLETS,
            &q(Kind::Tokens, "role", "admin"),
            20,
            "",
            2,
        )
        .unwrap();
        (templates.items, tokens.items)
    }

    /// A database from before per-kind versions (one version, "3", for
    /// records and credentials, and no keys for templates and tokens)
    /// gets templates and tokens indexed; credentials, whose keys are
    /// still of version 3, are left as they are (a key only they had is
    /// still there), and records, whose keys are not, are rebuilt.
    #[test]
    fn an_index_from_before_templates_and_tokens_gets_them_at_open() {
        const MARK: &[u8] = b"c-left-alone";
        const STALE: &[u8] = b"r-stale";
        let (_dir, store) = reopened(|s| {
            let index = s.tree(T::SearchIndex);
            index.clear().unwrap();
            index.insert(MARK, &[][..]).unwrap();
            index.insert(STALE, &[][..]).unwrap();
            let meta = s.tree(T::Meta);
            for kind in Kind::ALL {
                meta.remove(format!("{SEARCH_INDEX}.{}", kind.noun()))
                    .unwrap();
            }
            meta.insert(SEARCH_INDEX, "3").unwrap();
        });
        assert_eq!(found(&store), (vec![template()], vec![token()]));
        assert!(store.tree(T::SearchIndex).contains_key(MARK).unwrap());
        assert!(!store.tree(T::SearchIndex).contains_key(STALE).unwrap());
    }

    /// A kind whose keys are of an older version is cleared and built
    /// again; the other kinds are not touched.
    #[test]
    fn only_a_kind_with_older_keys_is_rebuilt() {
        const STALE: &[u8] = b"k-stale";
        const KEPT: &[u8] = b"r-kept";
        let (_dir, store) = reopened(|s| {
            let index = s.tree(T::SearchIndex);
            index.insert(STALE, &[][..]).unwrap();
            index.insert(KEPT, &[][..]).unwrap();
            s.tree(T::Meta)
                .insert(format!("{SEARCH_INDEX}.tokens"), "0")
                .unwrap();
        });
        let index = store.tree(T::SearchIndex);
        assert!(!index.contains_key(STALE).unwrap());
        assert!(index.contains_key(KEPT).unwrap());
        assert_eq!(found(&store), (vec![template()], vec![token()]));
    }
}
