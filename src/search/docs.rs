//! What each stored kind gives the search: its wallet, its place, and the
//! values of its fields.

use std::sync::LazyLock;

use serde_json::{Map, Value as Json};

use super::fields::{ACROSS_WALLETS, Kind, Name};
use crate::error::Result;
use crate::store::{CredentialRecord, Store, StoredCredential, Template, Token};

/// What the search reads of a document.
pub trait Searchable {
    fn wallet(&self) -> &str;
    fn id(&self) -> &str;
    /// Its place in creation order (every kind has `created_at`).
    fn created_ms(&self) -> i64 {
        self.time(Name::CreatedAt).unwrap_or(0)
    }
    /// The text values of a text, enum or list field (none when unset).
    fn texts(&self, n: Name) -> Vec<&str>;
    fn time(&self, n: Name) -> Option<i64>;
    /// The claims, for kinds that carry them.
    fn claims(&self) -> &Map<String, Json> {
        &NO_CLAIMS
    }
}

static NO_CLAIMS: LazyLock<Map<String, Json>> = LazyLock::new(Map::new);

/// A searchable kind the store keeps.
pub trait Doc: Searchable + Sized {
    const KIND: Kind;
    fn load(store: &Store, wallet: &str, id: &str) -> Result<Self>;
    /// The document of thread `thid`, when the store keeps a thread index
    /// of this kind (None: it does not; use the search index).
    fn by_thread(_store: &Store, _wallet: &str, _thid: &str) -> Option<Result<Option<Self>>> {
        None
    }
}

fn opt(s: &Option<String>) -> Vec<&str> {
    s.as_deref().into_iter().collect()
}

impl Searchable for CredentialRecord {
    fn wallet(&self) -> &str {
        &self.wallet_id
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn texts(&self, n: Name) -> Vec<&str> {
        match n {
            Name::Id => vec![&self.id],
            Name::State => vec![self.state.name()],
            Name::Role => vec![self.role.name()],
            Name::Connection => vec![&self.connection_id],
            Name::Thid => vec![&self.thid],
            Name::Types => self.types.iter().map(String::as_str).collect(),
            Name::Issuer => vec![&self.issuer_did],
            Name::Subject => opt(&self.subject_did),
            Name::Template => opt(&self.template_id),
            Name::Correlation => opt(&self.correlation_id),
            Name::Reference => opt(&self.reference_id),
            Name::Collection => opt(&self.collection_id),
            Name::CreatedBy => vec![&self.created_by],
            Name::Comment => opt(&self.comment),
            _ => vec![],
        }
    }

    fn time(&self, n: Name) -> Option<i64> {
        match n {
            Name::CreatedAt => Some(self.created_at_ms),
            Name::UpdatedAt => Some(self.updated_at_ms),
            Name::IssuedAt => self.issued_at_ms,
            Name::ExpiresAt => self.expires_at_ms,
            Name::RevokedAt => self.revocation.as_ref().map(|r| r.at_ms),
            _ => None,
        }
    }

    fn claims(&self) -> &Map<String, Json> {
        &self.claims
    }
}

impl Doc for CredentialRecord {
    const KIND: Kind = Kind::Records;

    fn load(store: &Store, wallet: &str, id: &str) -> Result<Self> {
        store.record(wallet, id)
    }

    fn by_thread(store: &Store, wallet: &str, thid: &str) -> Option<Result<Option<Self>>> {
        Some(store.record_by_thid(wallet, thid))
    }
}

impl Searchable for StoredCredential {
    fn wallet(&self) -> &str {
        &self.wallet_id
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn texts(&self, n: Name) -> Vec<&str> {
        match n {
            Name::Id => vec![&self.id],
            Name::Thid => vec![&self.thid],
            Name::Types => self.types.iter().map(String::as_str).collect(),
            Name::Issuer => vec![&self.issuer],
            Name::Subject => vec![&self.subject],
            Name::CreatedBy => vec![&self.created_by],
            _ => vec![],
        }
    }

    fn time(&self, n: Name) -> Option<i64> {
        let secs = |s: u64| i64::try_from(s).ok().and_then(|s| s.checked_mul(1000));
        match n {
            Name::CreatedAt => Some(self.received_at_ms),
            Name::IssuedAt => secs(self.not_before),
            Name::ExpiresAt => self.expires.and_then(secs),
            Name::RevokedAt => self.revocation.as_ref().map(|r| r.at_ms),
            _ => None,
        }
    }

    fn claims(&self) -> &Map<String, Json> {
        &self.claims
    }
}

impl Doc for StoredCredential {
    const KIND: Kind = Kind::Credentials;

    fn load(store: &Store, wallet: &str, id: &str) -> Result<Self> {
        store.credential(wallet, id)
    }
}

impl Searchable for Template {
    fn wallet(&self) -> &str {
        &self.wallet_id
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn texts(&self, n: Name) -> Vec<&str> {
        match n {
            Name::Id => vec![&self.id],
            Name::Label => vec![&self.name],
            Name::Types => self.types.iter().map(String::as_str).collect(),
            Name::Issuer => opt(&self.issuer_did),
            Name::CreatedBy => vec![&self.created_by],
            _ => vec![],
        }
    }

    fn time(&self, n: Name) -> Option<i64> {
        match n {
            Name::CreatedAt => Some(self.created_at_ms),
            Name::ArchivedAt => self.archived_at_ms,
            _ => None,
        }
    }
}

impl Doc for Template {
    const KIND: Kind = Kind::Templates;

    fn load(store: &Store, wallet: &str, id: &str) -> Result<Self> {
        store.template(wallet, id)
    }
}

impl Searchable for Token {
    fn wallet(&self) -> &str {
        ACROSS_WALLETS
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn texts(&self, n: Name) -> Vec<&str> {
        match n {
            Name::Id => vec![&self.id],
            Name::Wallet => vec![&self.wallet_id],
            Name::Access => vec![self.role.name()],
            Name::Label => vec![&self.label],
            Name::CreatedBy => vec![&self.created_by],
            _ => vec![],
        }
    }

    fn time(&self, n: Name) -> Option<i64> {
        match n {
            Name::CreatedAt => Some(self.created_at_ms),
            Name::RevokedAt => self.revoked_at_ms,
            _ => None,
        }
    }
}

impl Doc for Token {
    const KIND: Kind = Kind::Tokens;

    fn load(store: &Store, _: &str, id: &str) -> Result<Self> {
        store.token(id)
    }
}
