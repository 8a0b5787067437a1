//! The search index tree: read by `crate::search`, written with each record
//! and credential (`StoreTx::put_record`, `put_credential`).

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
    /// gets it, built from the records and credentials.
    pub(super) fn index_for_search(&self) -> Result<()> {
        let version = self.tree(T::Meta).get(SEARCH_INDEX)?;
        if version.as_deref() == Some(search::INDEX_VERSION.as_bytes()) {
            return Ok(());
        }
        self.writing(|| self.tree(T::SearchIndex).clear())?;
        self.index_all::<CredentialRecord>(T::Records)?;
        self.index_all::<StoredCredential>(T::Credentials)?;
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
