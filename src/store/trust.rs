//! Each wallet's trusted issuers, by DID.

use super::{Page, Store, StoreTx, T, TrustedIssuer, key};
use crate::error::Result;

impl Store {
    pub fn trusted_issuers(
        &self,
        wallet: &str,
        page_size: u32,
        page: &str,
    ) -> Result<Page<TrustedIssuer>> {
        self.page(
            T::TrustedIssuers,
            &key(&[wallet, ""]),
            page_size,
            page,
            |_| true,
        )
    }

    /// Whether the wallet trusts any issuer (an empty list checks nothing).
    pub fn has_trusted_issuers(&self, wallet: &str) -> Result<bool> {
        Ok(self
            .tree(T::TrustedIssuers)
            .scan_prefix(key(&[wallet, ""]))
            .next()
            .transpose()?
            .is_some())
    }

    pub fn trusted_issuer(&self, wallet: &str, did: &str) -> Result<Option<TrustedIssuer>> {
        self.get(T::TrustedIssuers, &key(&[wallet, did]))
    }
}

impl StoreTx<'_> {
    pub fn trusted_issuer(&self, wallet: &str, did: &str) -> Result<Option<TrustedIssuer>> {
        self.get(T::TrustedIssuers, &key(&[wallet, did]))
    }

    pub fn put_trusted_issuer(&self, t: &TrustedIssuer) -> Result<()> {
        self.put(T::TrustedIssuers, &key(&[&t.wallet_id, &t.did]), t)
    }

    /// Removes it; false if it was not there.
    pub fn remove_trusted_issuer(&self, wallet: &str, did: &str) -> Result<bool> {
        Ok(self
            .tree(T::TrustedIssuers)
            .remove(key(&[wallet, did]))
            .map_err(super::tx::tx_err)?
            .is_some())
    }
}
