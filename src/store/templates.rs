//! Credential templates, by id (ids are UUIDs, unique across wallets, so a
//! schema URL names one template). Lists are searches (`crate::search`).

use super::{Store, StoreTx, T, Template};
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
}

impl StoreTx<'_> {
    pub fn template(&self, wallet: &str, id: &str) -> Result<Template> {
        self.get::<Template>(T::Templates, id.as_bytes())?
            .filter(|t| t.wallet_id == wallet)
            .ok_or_else(|| Error::not_found("template", id))
    }

    /// Stores a template (a new one, or its archiving) and its search keys.
    pub fn put_template(&self, t: &Template) -> Result<()> {
        let old: Option<Template> = self.get(T::Templates, t.id.as_bytes())?;
        self.put(T::Templates, t.id.as_bytes(), t)?;
        self.reindex(old.as_ref(), Some(t))
    }
}
