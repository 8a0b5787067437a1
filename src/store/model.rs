//! The persisted records. Serialized as JSON so a record read by a newer
//! daemon keeps working when fields are added (`#[serde(default)]`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wallet {
    pub id: String,
    pub label: String,
    pub created_at_ms: i64,
}

/// What a control-plane token may do (see `rpc::auth` for the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TokenRole {
    /// Everything, in every wallet: wallets and tokens too.
    Admin,
    /// In its wallet: DIDs, connections, offers, issuing, its records.
    Issuer,
    /// In its wallet: connections, answering offers, its credentials.
    Holder,
    /// In its wallet, read only: records, credential metadata, events; no claims.
    Auditor,
}

impl TokenRole {
    pub const ALL: [TokenRole; 4] = [
        TokenRole::Admin,
        TokenRole::Issuer,
        TokenRole::Holder,
        TokenRole::Auditor,
    ];

    /// `admin`, `issuer`, `holder` or `auditor`: as searches name it.
    pub fn name(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::Issuer => "issuer",
            TokenRole::Holder => "holder",
            TokenRole::Auditor => "auditor",
        }
    }
}

/// A control-plane bearer token. Only the SHA-256 of its secret is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    /// The wallet it acts in (an admin token may name any).
    pub wallet_id: String,
    pub role: TokenRole,
    pub label: String,
    pub hash: Vec<u8>,
    /// Calls per second allowed (token bucket); 0: the configured default.
    pub rate_per_sec: u32,
    pub created_at_ms: i64,
    /// The token that made this one ("bootstrap" for the first admin).
    pub created_by: String,
    pub revoked_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyKind {
    Ed25519,
    X25519,
    Secp256k1,
    P256,
}

impl KeyKind {
    /// The signing key type of this kind; None for X25519, which cannot sign.
    pub fn key_type(self) -> Option<KeyType> {
        match self {
            KeyKind::Ed25519 => Some(KeyType::Ed25519),
            KeyKind::Secp256k1 => Some(KeyType::Secp256k1),
            KeyKind::P256 => Some(KeyType::P256),
            KeyKind::X25519 => None,
        }
    }
}

/// The type of a DID's signing key, which decides the JWS algorithm of what
/// it signs (see [`crate::crypto::PublicKey`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    #[default]
    Ed25519,
    Secp256k1,
    P256,
}

impl KeyType {
    /// The stored kind of a key of this type.
    pub fn kind(self) -> KeyKind {
        match self {
            KeyType::Ed25519 => KeyKind::Ed25519,
            KeyType::Secp256k1 => KeyKind::Secp256k1,
            KeyType::P256 => KeyKind::P256,
        }
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyType::Ed25519 => "Ed25519",
            KeyType::Secp256k1 => "secp256k1",
            KeyType::P256 => "P-256",
        })
    }
}

/// A private key sealed under the master key; only `crypto` can open it.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredKey {
    pub id: String,
    pub kind: KeyKind,
    /// Raw for Ed25519 and X25519 (32 bytes), a compressed SEC1 point for
    /// secp256k1 and P-256 (33). Older records hold 32-byte arrays, which
    /// read the same in JSON.
    pub public: Vec<u8>,
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
    /// Records from before there was a choice are Ed25519.
    #[serde(default)]
    pub key_type: KeyType,
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
    /// Invitee: the first message was refused by the inviter (an
    /// invitation already used) or could not be delivered at all.
    Failed,
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
    /// Why the connection Failed.
    #[serde(default)]
    pub problem: Option<String>,
    /// Invitee: the thread of the offer its invitation carried (a claim link).
    #[serde(default)]
    pub offer_thid: Option<String>,
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
    /// The issue-credential record this message moves on when delivered.
    #[serde(default)]
    pub record_id: Option<String>,
}

/// Which side of an issue-credential thread a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Issuer,
    Holder,
}

/// Issue Credential 3.0 record states, named as Hyperledger Identus names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordState {
    // Issuer
    OfferPending,
    OfferSent,
    RequestReceived,
    CredentialPending,
    CredentialGenerated,
    CredentialSent,
    // Holder
    OfferReceived,
    RequestPending,
    RequestSent,
    CredentialReceived,
    // Either
    ProblemReportPending,
    ProblemReportSent,
    ProblemReportReceived,
    Abandoned,
    // Issuer, before OfferPending: an offer kept to edit, not yet sent.
    Draft,
}

impl Role {
    /// `issuer` or `holder`: as searches and metrics name it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Issuer => "issuer",
            Role::Holder => "holder",
        }
    }
}

impl RecordState {
    /// The state's name as DESIGN.md writes it (`CredentialSent`).
    pub fn name(self) -> &'static str {
        match self {
            RecordState::OfferPending => "OfferPending",
            RecordState::OfferSent => "OfferSent",
            RecordState::RequestReceived => "RequestReceived",
            RecordState::CredentialPending => "CredentialPending",
            RecordState::CredentialGenerated => "CredentialGenerated",
            RecordState::CredentialSent => "CredentialSent",
            RecordState::OfferReceived => "OfferReceived",
            RecordState::RequestPending => "RequestPending",
            RecordState::RequestSent => "RequestSent",
            RecordState::CredentialReceived => "CredentialReceived",
            RecordState::ProblemReportPending => "ProblemReportPending",
            RecordState::ProblemReportSent => "ProblemReportSent",
            RecordState::ProblemReportReceived => "ProblemReportReceived",
            RecordState::Abandoned => "Abandoned",
            RecordState::Draft => "Draft",
        }
    }

    pub const ALL: [RecordState; 15] = [
        RecordState::OfferPending,
        RecordState::OfferSent,
        RecordState::RequestReceived,
        RecordState::CredentialPending,
        RecordState::CredentialGenerated,
        RecordState::CredentialSent,
        RecordState::OfferReceived,
        RecordState::RequestPending,
        RecordState::RequestSent,
        RecordState::CredentialReceived,
        RecordState::ProblemReportPending,
        RecordState::ProblemReportSent,
        RecordState::ProblemReportReceived,
        RecordState::Abandoned,
        RecordState::Draft,
    ];

    /// No further protocol message is expected (an issuer's CredentialSent
    /// still records the holder's ack when it comes).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RecordState::CredentialSent
                | RecordState::CredentialReceived
                | RecordState::ProblemReportSent
                | RecordState::ProblemReportReceived
                | RecordState::Abandoned
        )
    }
}

fn asked() -> bool {
    true
}

fn prism_jwt() -> String {
    "prism/jwt".into()
}

/// One issue-credential thread as seen by one wallet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialRecord {
    pub id: String,
    pub wallet_id: String,
    pub role: Role,
    pub state: RecordState,
    /// Bumped by every committed change; actions compare-and-swap on it.
    pub version: u64,
    pub thid: String,
    pub connection_id: String,
    pub our_did: String,
    pub their_did: String,
    /// The offered claims, a JSON object.
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub types: Vec<String>,
    pub schema_id: Option<String>,
    pub validity_period_secs: u64,
    pub automatic_issuance: bool,
    pub idempotency_key: Option<String>,
    /// The issuer's did:key that signs the credential.
    pub issuer_did: String,
    /// The holder's DID the credential is about, once the holder names it.
    pub subject_did: Option<String>,
    /// The nonce the holder's request must sign (proof of the subject DID).
    pub challenge: String,
    pub credential_id: Option<String>,
    pub ack_received: bool,
    /// Issuer: our credential asked for an ack (`please_ack`); an ack not
    /// asked for is only logged. Holder: the credential asked, so we ack.
    /// Records from before this field acked and expected acks.
    #[serde(default = "asked")]
    pub ack_requested: bool,
    /// The offer's `options.domain`, the audience of the holder's proof;
    /// empty: the issuer DID.
    #[serde(default)]
    pub domain: String,
    /// The attachment format the thread speaks (`prism/jwt`, …).
    #[serde(default = "prism_jwt")]
    pub format: String,
    /// Why the record is in a problem-report or Abandoned state.
    pub problem: Option<String>,
    pub comment: Option<String>,
    /// When the message this record waits on an answer to expires.
    pub expires_at_ms: Option<i64>,
    /// When the sweeper abandons the record, if it is not final (indexed).
    pub deadline_ms: Option<i64>,
    pub meta_retries: u32,
    pub meta_next_retry_ms: Option<i64>,
    pub meta_last_failure: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Who made the record and who changed it last: a control-plane token
    /// id, "peer" (a message from the peer), "agentd" (sweeping), or ""
    /// (no tokens, or before this was kept). Delivery bookkeeping changes
    /// no one's `updated_by`.
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub updated_by: String,
    /// Issuer: where the credential's revocation bit is (allocated when it
    /// was signed; None for credentials from before status lists).
    #[serde(default)]
    pub status: Option<StatusSlot>,
    /// Issuer: the credential was revoked.
    #[serde(default)]
    pub revocation: Option<Revocation>,
    /// When the credential was signed (issuer) or received (holder).
    #[serde(default)]
    pub issued_at_ms: Option<i64>,
    /// Issuer: the template the offer named, and the `@context`s it adds.
    #[serde(default)]
    pub template_id: Option<String>,
    #[serde(default)]
    pub contexts: Vec<String>,
    /// Issuer: the claim link (an invitation carrying the offer) the offer
    /// went out in, if it did.
    #[serde(default)]
    pub claim_link: Option<String>,
    /// Issuer: the credential's `exp` as asked (Unix seconds); None: issuance
    /// time + `validity_period_secs`.
    #[serde(default)]
    pub credential_expires_at: Option<u64>,
    /// Issuer, a draft: the offer's `expires_time` in seconds from when it
    /// is sent (0: none).
    #[serde(default)]
    pub draft_expires_in_secs: u64,
    /// Issuer: the caller's own ids for the offer.
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub reference_id: Option<String>,
    /// Issuer: the collection (a batch, a campaign) the caller filed it in.
    #[serde(default)]
    pub collection_id: Option<String>,
    /// Issuer: when its claims and comment were deleted (an offer never
    /// claimed, once finished).
    #[serde(default)]
    pub data_deleted_at_ms: Option<i64>,
}

/// A credential's place in one of its issuer's status lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusSlot {
    pub list_id: String,
    pub index: u32,
}

/// Who revoked a credential, when and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub at_ms: i64,
    pub reason: String,
    /// Issuer: the token that revoked it ("" without tokens); holder:
    /// "peer" (the issuer's notification).
    pub by: String,
}

/// An issuer wallet's credential template: what its offers may say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub id: String,
    pub wallet_id: String,
    pub name: String,
    /// Credential types besides `VerifiableCredential`.
    pub types: Vec<String>,
    /// `@context`s its credentials add after the VC base context.
    #[serde(default)]
    pub contexts: Vec<String>,
    /// A JSON Schema for `credentialSubject` (without `id`).
    pub schema: serde_json::Value,
    /// Validity of its credentials when an offer names none (0: no expiry).
    pub default_validity_secs: u64,
    /// The longest validity an offer may ask (0: no bound).
    pub max_validity_secs: u64,
    /// The did:key that signs its credentials when an offer names none.
    pub issuer_did: Option<String>,
    pub created_at_ms: i64,
    pub created_by: String,
    /// Archived: kept (its schema is still served) but no offer may use it.
    pub archived_at_ms: Option<i64>,
}

/// An issuer a wallet trusts: `VerifyCredential`'s `TrustRegistryMembership`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedIssuer {
    pub wallet_id: String,
    pub did: String,
    /// A name for people; not checked.
    pub label: String,
    pub added_at_ms: i64,
    pub added_by: String,
}

/// One Bitstring Status List (purpose `revocation`) of an issuer DID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusList {
    pub id: String,
    pub wallet_id: String,
    pub issuer_did: String,
    /// Entries (bits) in the list.
    pub capacity: u32,
    /// Entries given to credentials so far; the list is full at `capacity`.
    pub allocated: u32,
    /// Bumped whenever a bit changes: the served list is signed again when
    /// it moved.
    pub revision: u64,
    pub created_at_ms: i64,
}

impl CredentialRecord {
    /// The audience the holder's proof names: the offer's domain, else the
    /// issuer DID.
    pub fn audience(&self) -> &str {
        if self.domain.is_empty() {
            &self.issuer_did
        } else {
            &self.domain
        }
    }
}

/// A credential held by a wallet, verified when it was received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCredential {
    pub id: String,
    pub wallet_id: String,
    pub record_id: String,
    pub thid: String,
    pub issuer: String,
    pub subject: String,
    pub types: Vec<String>,
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub jwt: String,
    pub not_before: u64,
    pub expires: Option<u64>,
    pub received_at_ms: i64,
    /// The token that accepted the offer it answers ("" without tokens).
    #[serde(default)]
    pub created_by: String,
    /// The issuer told us it revoked the credential, or its status list
    /// said so when we last checked.
    #[serde(default)]
    pub revocation: Option<Revocation>,
    /// When its status list was last checked, and what kept that check from
    /// an answer (None: it answered).
    #[serde(default)]
    pub status_checked_at_ms: Option<i64>,
    #[serde(default)]
    pub status_check_error: Option<String>,
}

/// A committed record state change, in commit order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordEvent {
    pub seq: u64,
    pub wallet_id: String,
    pub record_id: String,
    pub thid: String,
    pub role: Role,
    pub old_state: Option<RecordState>,
    pub new_state: RecordState,
    pub reason: Option<String>,
    pub at_ms: i64,
    /// Issuer: the holder has acknowledged the credential (the flow is complete).
    #[serde(default)]
    pub ack_received: bool,
}
