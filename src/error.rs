//! The library's error type. Each variant is one kind a caller can act on;
//! `src/rpc` maps it to a gRPC status in one place.

use crate::did::DidError;
use crate::didcomm::EnvelopeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{kind} not found: {id}")]
    NotFound { kind: &'static str, id: String },
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    #[error("timed out: {0}")]
    DeadlineExceeded(String),
    #[error(transparent)]
    Did(#[from] DidError),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("storage: {0}")]
    Storage(String),
    #[error("key store: {0}")]
    Crypto(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

impl From<sled::transaction::TransactionError<Error>> for Error {
    fn from(e: sled::transaction::TransactionError<Error>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => e.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `text` cut to at most `max` bytes (on a character boundary) with `…`
/// marking the cut: for anything a peer sent that goes into an error, a
/// log line or a response, so that its size is ours to bound, not theirs.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn clip_cuts_on_a_character_boundary() {
        assert_eq!(super::clip("abc", 5), "abc");
        assert_eq!(super::clip("abcdef", 3), "abc…");
        assert_eq!(super::clip("aéé", 2), "a…");
    }
}
