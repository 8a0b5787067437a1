//! Status lists: each list's record, its entries (taken, revoked) by index,
//! the issuer DID's current list, and an issuer's record by credential id.
//! Which index to take is `crate::status`'s decision; this only stores it.

use super::tx::tx_err;
use super::{CredentialRecord, StatusList, Store, StoreTx, T, key};
use crate::error::{Error, Result};

/// An entry's value in the bits tree: given to a credential, or revoked.
const TAKEN: u8 = 0;
const REVOKED: u8 = 1;

fn bit_key(list_id: &str, index: u32) -> Vec<u8> {
    let mut k = key(&[list_id, ""]);
    k.extend(index.to_be_bytes());
    k
}

fn current_name(wallet: &str, issuer_did: &str) -> Vec<u8> {
    key(&["status_current", wallet, issuer_did])
}

impl Store {
    pub fn status_list(&self, id: &str) -> Result<Option<StatusList>> {
        self.get(T::StatusLists, id.as_bytes())
    }

    /// Whether index `index` of the list is revoked (the committed bit).
    pub fn status_revoked(&self, list_id: &str, index: u32) -> Result<bool> {
        Ok(self
            .tree(T::StatusBits)
            .get(bit_key(list_id, index))?
            .is_some_and(|v| v.as_ref() == [REVOKED]))
    }

    /// The revoked indices of a list, in order.
    pub fn revoked_indices(&self, list_id: &str) -> Result<Vec<u32>> {
        let prefix = key(&[list_id, ""]);
        let mut revoked = Vec::new();
        for kv in self.tree(T::StatusBits).scan_prefix(&prefix) {
            let (k, v) = kv?;
            if v.as_ref() == [REVOKED]
                && let Ok(index) = k[prefix.len()..].try_into()
            {
                revoked.push(u32::from_be_bytes(index));
            }
        }
        Ok(revoked)
    }
}

impl StoreTx<'_> {
    /// The list new credentials of `issuer_did` take their index from, if any.
    pub fn current_status_list(
        &self,
        wallet: &str,
        issuer_did: &str,
    ) -> Result<Option<StatusList>> {
        match self
            .tree(T::Meta)
            .get(current_name(wallet, issuer_did))
            .map_err(tx_err)?
        {
            Some(id) => self.get(T::StatusLists, &id),
            None => Ok(None),
        }
    }

    pub fn status_list(&self, id: &str) -> Result<Option<StatusList>> {
        self.get(T::StatusLists, id.as_bytes())
    }

    /// Stores a list; `current` makes it the one its issuer DID allocates from.
    pub fn put_status_list(&self, list: &StatusList, current: bool) -> Result<()> {
        self.put(T::StatusLists, list.id.as_bytes(), list)?;
        if current {
            self.tree(T::Meta)
                .insert(
                    current_name(&list.wallet_id, &list.issuer_did),
                    list.id.as_bytes(),
                )
                .map_err(tx_err)?;
        }
        Ok(())
    }

    /// Whether index `index` of the list was given to a credential.
    pub fn status_index_taken(&self, list_id: &str, index: u32) -> Result<bool> {
        Ok(self
            .tree(T::StatusBits)
            .get(bit_key(list_id, index))
            .map_err(tx_err)?
            .is_some())
    }

    pub fn take_status_index(&self, list_id: &str, index: u32) -> Result<()> {
        self.tree(T::StatusBits)
            .insert(bit_key(list_id, index), &[TAKEN][..])
            .map_err(tx_err)?;
        Ok(())
    }

    /// Sets the revocation bit of an index and bumps the list's revision
    /// (so it is signed again); false if the bit was set already.
    pub fn revoke_status_index(&self, list_id: &str, index: u32) -> Result<bool> {
        let was = self
            .tree(T::StatusBits)
            .insert(bit_key(list_id, index), &[REVOKED][..])
            .map_err(tx_err)?;
        if was.as_deref() == Some(&[REVOKED][..]) {
            return Ok(false);
        }
        let mut list = self
            .status_list(list_id)?
            .ok_or_else(|| Error::not_found("status list", list_id))?;
        list.revision += 1;
        self.put(T::StatusLists, list.id.as_bytes(), &list)?;
        Ok(true)
    }

    /// The wallet's issuer record of the credential with this id, if any.
    pub fn record_by_credential(
        &self,
        wallet: &str,
        credential_id: &str,
    ) -> Result<Option<CredentialRecord>> {
        match self
            .tree(T::CredentialIndex)
            .get(key(&[wallet, credential_id]))
            .map_err(tx_err)?
        {
            Some(id) => self.get(T::Records, &key(&[wallet, &String::from_utf8_lossy(&id)])),
            None => Ok(None),
        }
    }
}
