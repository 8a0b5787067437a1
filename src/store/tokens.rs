//! Control-plane tokens: the record by id, and the id by the token's hash
//! (the secret itself is never stored).

use super::{Page, Store, StoreTx, T, Token};
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

    /// Tokens, of one wallet or (None) of all.
    pub fn tokens(&self, wallet: Option<&str>, page_size: u32, page: &str) -> Result<Page<Token>> {
        self.page(T::Tokens, b"", page_size, page, |t: &Token| {
            wallet.is_none_or(|w| t.wallet_id == w)
        })
    }
}

impl StoreTx<'_> {
    pub fn token(&self, id: &str) -> Result<Token> {
        self.get(T::Tokens, id.as_bytes())?
            .ok_or_else(|| Error::not_found("token", id))
    }

    /// Stores a token and indexes its hash (a new token, or a change such
    /// as its revocation).
    pub fn put_token(&self, t: &Token) -> Result<()> {
        self.put(T::Tokens, t.id.as_bytes(), t)?;
        self.tree(T::TokenHashes)
            .insert(t.hash.as_slice(), t.id.as_bytes())
            .map_err(super::tx::tx_err)?;
        Ok(())
    }
}
