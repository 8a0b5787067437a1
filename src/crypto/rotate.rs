//! `agentd rotate-master-key`, offline: every key is sealed again under a
//! new master key in one sled transaction. A crash before that commits
//! leaves the old key in force; after it, running the command again
//! finishes (it sees the new key already opens the database).

use std::path::{Path, PathBuf};

use super::{KeyStore, MasterKey};
use crate::error::{Error, Result};
use crate::store::Store;

/// Where the old and the new master key come from.
pub enum KeySource {
    /// The operator keeps both (AGENTD_MASTER_KEY, AGENTD_NEW_MASTER_KEY)
    /// and starts the daemon with the new one afterwards.
    Env { old: String, new: String },
    /// The key file: the new key is made next to it (`<file>.new`, 0600)
    /// and replaces it once the database is sealed under it.
    File(PathBuf),
}

/// What a rotation did.
pub struct Rotated {
    /// Keys sealed again (0 when an interrupted run had done it already).
    pub keys: usize,
    /// An earlier, interrupted run had committed; this one finished it.
    pub finished_earlier_run: bool,
}

/// The new key's file while a rotation is under way.
pub fn pending_file(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

/// Rotates the master key of the database at `db` (the daemon stopped).
pub fn rotate_master_key(db: &Path, source: &KeySource) -> Result<Rotated> {
    let (old, new) = match source {
        KeySource::Env { old, new } => (
            MasterKey::load_existing(Some(old), Path::new(""))?,
            MasterKey::load_existing(Some(new), Path::new("")).map_err(|_| {
                Error::InvalidArgument(
                    "AGENTD_NEW_MASTER_KEY must be 64 hex characters (32 bytes)".into(),
                )
            })?,
        ),
        // A `.new` file left by an interrupted run is used again: the
        // database may already be sealed under it.
        KeySource::File(file) => (
            MasterKey::load_existing(None, file)?,
            MasterKey::load(None, &pending_file(file))?,
        ),
    };
    crate::crashpoint!("rotate.after_new_key");
    let store = Store::open(db).map_err(|e| match e {
        Error::Storage(m) if m.contains("could not acquire lock") => {
            Error::FailedPrecondition(format!(
                "{} is in use: stop the daemon before rotating its master key",
                db.display()
            ))
        }
        e => e,
    })?;
    let rotated = match KeyStore::open(old, store.clone()) {
        Ok(keys) => {
            keys.open_all()?;
            let n = keys.reseal(&new)?;
            crate::crashpoint!("rotate.after_commit");
            Rotated {
                keys: n,
                finished_earlier_run: false,
            }
        }
        Err(Error::Crypto(_)) => {
            KeyStore::open(new, store.clone()).map_err(|_| {
                Error::FailedPrecondition(
                    "neither the current nor the new master key opens this database".into(),
                )
            })?;
            Rotated {
                keys: 0,
                finished_earlier_run: true,
            }
        }
        Err(e) => return Err(e),
    };
    drop(store);
    if let KeySource::File(file) = source {
        // Durable before success is reported: the old file would not open
        // the database any more.
        crate::store::rename_durably(&pending_file(file), file)
            .map_err(|e| Error::Internal(format!("replacing {}: {e}", file.display())))?;
    }
    Ok(rotated)
}
