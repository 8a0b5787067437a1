//! The persisted records. Serialized as JSON so a record read by a newer
//! daemon keeps working when fields are added (`#[serde(default)]`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wallet {
    pub id: String,
    pub label: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyKind {
    Ed25519,
    X25519,
}

/// A private key sealed under the master key; only `crypto` can open it.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredKey {
    pub id: String,
    pub kind: KeyKind,
    pub public: [u8; 32],
    pub sealed: Vec<u8>,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DidMethod {
    Key,
    Peer2,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DidRecord {
    pub did: String,
    pub wallet_id: String,
    pub method: DidMethod,
    pub signing_key_id: String,
    pub agreement_key_id: String,
    /// "user" or "connection".
    pub purpose: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionState {
    InvitationSent,
    Requested,
    Active,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionRole {
    Inviter,
    Invitee,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub id: String,
    pub wallet_id: String,
    pub state: ConnectionState,
    pub role: ConnectionRole,
    pub our_did: String,
    pub their_did: Option<String>,
    pub invitation_id: String,
    pub label: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A message accepted by `POST /didcomm`, decrypted and authenticated,
/// waiting for its protocol handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxEntry {
    pub wallet_id: String,
    /// Our DID the message was encrypted to.
    pub recipient: String,
    /// The authenticated sender DID (authcrypt skid), if any.
    pub sender: Option<String>,
    /// The plaintext DIDComm message as JSON.
    pub message: String,
    pub received_at_ms: i64,
}

/// A plaintext message waiting to be packed and delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub id: String,
    pub wallet_id: String,
    pub from: String,
    pub to: String,
    pub message: String,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
}
