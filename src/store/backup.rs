//! A copy of every tree at one point while the daemon runs, and loading
//! one into a new database. The file around it is [`crate::backup`]'s.

use std::path::Path;
use std::sync::PoisonError;

use super::{ID_FLOOR, Store, StoredKey, T, TREE_NAMES, decode, private_dir};
use crate::error::{Error, Result};

/// Where a snapshot was taken.
pub struct SnapshotPoint {
    /// Every id handed out so far is below it.
    pub id_floor: u64,
    /// The last record event it holds.
    pub event_seq: u64,
    pub entries: u64,
}

/// One entry of a snapshot: its tree's name, the key, the value.
pub type Entry = (String, Vec<u8>, Vec<u8>);

/// Entries written to a new database in one sled batch.
const LOAD_BATCH: usize = 10_000;

impl Store {
    /// The trees' names; a snapshot numbers its entries' trees by them.
    pub fn tree_names() -> &'static [&'static str] {
        &TREE_NAMES
    }

    /// Calls `entry(tree, key, value)` for every entry of every tree while
    /// every write waits, so the entries are the database at one point
    /// (writers pause for as long as the copy takes).
    pub fn snapshot(
        &self,
        mut entry: impl FnMut(usize, &[u8], &[u8]) -> std::io::Result<()>,
    ) -> Result<SnapshotPoint> {
        let _alone = self
            .inner
            .gate
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut entries = 0;
        for (i, tree) in self.inner.trees.iter().enumerate() {
            for kv in tree.iter() {
                let (k, v) = kv?;
                entry(i, &k, &v)
                    .map_err(|e| Error::Storage(format!("writing the snapshot: {e}")))?;
                entries += 1;
            }
        }
        Ok(SnapshotPoint {
            id_floor: self.next_id()?,
            event_seq: self.last_event_seq()?,
            entries,
        })
    }

    /// An unnamed file (0600, gone when closed) next to the database, for
    /// staging a snapshot: the temporary directory may be small or in memory.
    pub fn scratch_file(&self) -> Result<std::fs::File> {
        tempfile::tempfile_in(&self.inner.path)
            .map_err(|e| Error::Storage(format!("a scratch file in the data directory: {e}")))
    }

    /// Writes `(tree name, key, value)` entries into a new database at
    /// `path` and opens it; ids handed out there continue above `id_floor`.
    pub fn load(
        path: &Path,
        id_floor: u64,
        entries: impl Iterator<Item = Result<Entry>>,
    ) -> Result<Store> {
        private_dir(path, true).map_err(|e| Error::Storage(format!("{}: {e}", path.display())))?;
        let db = sled::Config::new().path(path).open()?;
        let mut current: Option<(String, sled::Tree, sled::Batch, usize)> = None;
        let apply =
            |tree: &sled::Tree, batch: &mut sled::Batch| tree.apply_batch(std::mem::take(batch));
        for e in entries {
            let (name, k, v) = e?;
            if current.as_ref().is_none_or(|(n, ..)| *n != name) {
                if let Some((_, tree, mut batch, _)) = current.take() {
                    apply(&tree, &mut batch)?;
                }
                if !TREE_NAMES.contains(&name.as_str()) {
                    return Err(Error::InvalidArgument(format!(
                        "the backup holds a tree {name:?} this agentd does not know: \
                         restore it with the version that made it"
                    )));
                }
                current = Some((name.clone(), db.open_tree(&name)?, Default::default(), 0));
            }
            let (_, tree, batch, n) = current.as_mut().expect("a tree is open");
            batch.insert(k, v);
            *n += 1;
            if *n % LOAD_BATCH == 0 {
                apply(tree, batch)?;
            }
        }
        if let Some((_, tree, mut batch, _)) = current.take() {
            apply(&tree, &mut batch)?;
        }
        db.open_tree(TREE_NAMES[T::Meta as usize])?
            .insert(ID_FLOOR, &id_floor.to_be_bytes())?;
        db.flush()?;
        Store::on(db, path)
    }

    /// Every stored key with its wallet, for re-sealing them all.
    pub fn all_keys(&self) -> Result<Vec<(String, StoredKey)>> {
        self.tree(T::Keys)
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let wallet = k.split(|b| *b == 0).next().unwrap_or_default();
                Ok((String::from_utf8_lossy(wallet).into_owned(), decode(&v)?))
            })
            .collect()
    }
}
