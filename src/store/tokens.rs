//! Control-plane tokens: the record by id, and the id by the token's hash
//! (the secret itself is never stored). Lists are searches
//! (`crate::search`).

use super::{Store, StoreTx, T, Token};
use crate::error::{Error, Result};

impl Store {
    pub fn token(&self, id: &str) -> Result<Token> {
        self.get(T::Tokens, id.as_bytes())?
            .ok_or_else(|| Error::not_found("token", id))
    }

    /// The token whose secret hashes to `hash`, if any (revoked or not).
    pub fn token_by_hash(&self, hash: &[u8]) -> Result<Option<Token>> {
        match self.tree(T::TokenHashes).get(hash)? {
            Some(id) => self.get(T::Tokens, &id),
            None => Ok(None),
        }
    }
}

impl StoreTx<'_> {
    pub fn token(&self, id: &str) -> Result<Token> {
        self.get(T::Tokens, id.as_bytes())?
            .ok_or_else(|| Error::not_found("token", id))
    }

    /// Stores a token and indexes its hash and search keys (a new token,
    /// or a change such as its revocation).
    pub fn put_token(&self, t: &Token) -> Result<()> {
        let old: Option<Token> = self.get(T::Tokens, t.id.as_bytes())?;
        self.put(T::Tokens, t.id.as_bytes(), t)?;
        self.reindex(old.as_ref(), Some(t))?;
        self.tree(T::TokenHashes)
            .insert(t.hash.as_slice(), t.id.as_bytes())
            .map_err(super::tx::tx_err)?;
        Ok(())
    }
}
