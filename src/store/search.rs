//! The search index tree: read by `crate::search`, written with each record,
//! credential, template and token (`StoreTx::put_record`, `put_credential`,
//! `put_template`, `put_token`).

use std::ops::Bound;

use super::*;
use crate::search::{self, Doc};

/// Documents indexed per transaction when the index is built at open.
const BUILD_BATCH: usize = 1_000;

impl Store {
    /// Index keys between `lo` and `hi`, ascending or descending.
    pub(crate) fn index_range(
        &self,
        lo: Bound<Vec<u8>>,
        hi: Bound<Vec<u8>>,
        descending: bool,
    ) -> Box<dyn Iterator<Item = Result<sled::IVec>> + Send> {
        let keys = self.tree(T::SearchIndex).range((lo, hi)).keys();
        let keys = keys.map(|k| k.map_err(Error::from));
        if descending {
            Box::new(keys.rev())
        } else {
            Box::new(keys)
        }
    }

    /// A database written before the search index (or with an older one)
    /// gets it, built from the records, credentials, templates and tokens.
    pub(super) fn index_for_search(&self) -> Result<()> {
        let version = self.tree(T::Meta).get(SEARCH_INDEX)?;
        if version.as_deref() == Some(search::INDEX_VERSION.as_bytes()) {
            return Ok(());
        }
        self.writing(|| self.tree(T::SearchIndex).clear())?;
        self.index_all::<CredentialRecord>(T::Records)?;
        self.index_all::<StoredCredential>(T::Credentials)?;
        self.index_all::<Template>(T::Templates)?;
        self.index_all::<Token>(T::Tokens)?;
        self.tree(T::Meta)
            .insert(SEARCH_INDEX, search::INDEX_VERSION.as_bytes())?;
        self.flush()
    }

    fn index_all<D: Doc + serde::de::DeserializeOwned>(&self, t: T) -> Result<()> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for v in self.tree(t).iter().values() {
            let d: D = decode(&v?)?;
            for k in search::entries(&d) {
                batch.insert(k, &[][..]);
            }
            n += 1;
            if n % BUILD_BATCH == 0 {
                self.writing(|| {
                    self.tree(T::SearchIndex)
                        .apply_batch(std::mem::take(&mut batch))
                })?;
            }
        }
        self.writing(|| self.tree(T::SearchIndex).apply_batch(batch))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::{ACROSS_WALLETS, Filter, Kind, Query};

    /// A database whose index is of an older version (or missing) gets
    /// every kind indexed again at open: the token bootstrap at start
    /// looks for an admin token by search.
    #[test]
    fn an_older_index_is_rebuilt_at_open_for_every_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let template = Template {
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
        };
        let token = Token {
            id: "k1".into(),
            wallet_id: "w".into(),
            role: TokenRole::Admin,
            label: "bootstrap".into(),
            hash: vec![1; 32],
            rate_per_sec: 0,
            created_at_ms: 1,
            created_by: "bootstrap".into(),
            revoked_at_ms: None,
        };
        {
            let store = Store::open(&path).unwrap();
            store
                .transact(|tx| {
                    tx.put_template(&template)?;
                    tx.put_token(&token)
                })
                .unwrap();
            store.tree(T::SearchIndex).clear().unwrap();
            store.tree(T::Meta).insert(SEARCH_INDEX, "3").unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let q = |kind, field, value| Query::default().and(Filter::eq(kind, field, value).unwrap());
        let templates = search::run::<Template>(
            &store,
            "w",
            &q(Kind::Templates, "name", "Degree"),
            20,
            "",
            2,
        )
        .unwrap();
        assert_eq!(templates.items, vec![template]);
        let tokens = search::run::<Token>(
            &store,
            ACROSS_WALLETS,
            &q(Kind::Tokens, "role", "admin"),
            20,
            "",
            2,
        )
        .unwrap();
        assert_eq!(tokens.items, vec![token]);
    }
}
