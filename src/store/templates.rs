//! Credential templates, by id (ids are UUIDs, unique across wallets, so a
//! schema URL names one template).

use super::{Page, Store, StoreTx, T, Template};
use crate::error::{Error, Result};

impl Store {
    /// A template of any wallet (the public schema URL does not name one).
    pub fn template_any(&self, id: &str) -> Result<Option<Template>> {
        self.get(T::Templates, id.as_bytes())
    }

    pub fn template(&self, wallet: &str, id: &str) -> Result<Template> {
        self.template_any(id)?
            .filter(|t| t.wallet_id == wallet)
            .ok_or_else(|| Error::not_found("template", id))
    }

    /// A wallet's templates; archived ones only with `archived`.
    pub fn templates(
        &self,
        wallet: &str,
        archived: bool,
        page_size: u32,
        page: &str,
    ) -> Result<Page<Template>> {
        self.page(T::Templates, b"", page_size, page, |t: &Template| {
            t.wallet_id == wallet && (archived || t.archived_at_ms.is_none())
        })
    }
}

impl StoreTx<'_> {
    pub fn template(&self, wallet: &str, id: &str) -> Result<Template> {
        self.get::<Template>(T::Templates, id.as_bytes())?
            .filter(|t| t.wallet_id == wallet)
            .ok_or_else(|| Error::not_found("template", id))
    }

    pub fn put_template(&self, t: &Template) -> Result<()> {
        self.put(T::Templates, t.id.as_bytes(), t)
    }
}
