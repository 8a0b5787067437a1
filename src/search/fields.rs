//! The searchable fields of each kind, their types, and which operators
//! and values each takes.

use super::{Cond, MAX_IN, MAX_TEXT, Op, SortKey, Value, invalid};
use crate::error::Result;
use crate::store::{RecordState, Role, TokenRole};

/// What is searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Issue-credential records of both roles (revocations among them:
    /// `revoked_at`).
    Records,
    /// Credentials a wallet holds.
    Credentials,
    /// An issuer wallet's credential templates.
    Templates,
    /// Control-plane tokens, of every wallet ([`ACROSS_WALLETS`]; their
    /// wallet is the field `wallet_id`).
    Tokens,
}

/// The scope a search of tokens runs in: tokens are listed by admins,
/// across wallets.
pub const ACROSS_WALLETS: &str = "";

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Records,
        Kind::Credentials,
        Kind::Templates,
        Kind::Tokens,
    ];

    /// `records`, `credentials`, `templates` or `tokens`.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Records => "records",
            Kind::Credentials => "credentials",
            Kind::Templates => "templates",
            Kind::Tokens => "tokens",
        }
    }

    fn fields(self) -> &'static [(&'static str, Name)] {
        match self {
            Kind::Records => RECORD_FIELDS,
            Kind::Credentials => CREDENTIAL_FIELDS,
            Kind::Templates => TEMPLATE_FIELDS,
            Kind::Tokens => TOKEN_FIELDS,
        }
    }

    /// The values of `status`, which is derived from the kind's times (see
    /// `eval::status`); none when the kind has no status.
    pub(super) fn statuses(self) -> &'static [&'static str] {
        match self {
            Kind::Records => &[],
            Kind::Credentials => &["active", "expired", "revoked"],
            Kind::Templates => &["active", "archived"],
            Kind::Tokens => &["active", "revoked"],
        }
    }

    /// Records and credentials carry claims; templates and tokens do not.
    fn has_claims(self) -> bool {
        matches!(self, Kind::Records | Kind::Credentials)
    }

    /// The named fields the store indexes for this kind: what is asked of
    /// most. Each key costs every write that changes it (sled copies a
    /// leaf per insert), so the others are checked on the documents.
    pub(super) fn indexed(self) -> &'static [Name] {
        match self {
            // A record's thread is found by the store's thread index; its
            // role is kept with its state (index::state_run).
            Kind::Records => &[
                Name::State,
                Name::Connection,
                Name::Types,
                Name::Issuer,
                Name::Subject,
                Name::Template,
                Name::Correlation,
                Name::UpdatedAt,
            ],
            Kind::Credentials => &[Name::Types, Name::Issuer, Name::Subject, Name::ExpiresAt],
            // A wallet has few templates: its documents are read.
            Kind::Templates => &[],
            // The role too: the bootstrap at start looks for a live admin.
            Kind::Tokens => &[Name::Wallet, Name::Access],
        }
    }
}

/// A named field; its number is its place in index keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Name {
    Id = 1,
    State,
    Role,
    Connection,
    Thid,
    Types,
    Issuer,
    Subject,
    Template,
    Correlation,
    Reference,
    Collection,
    CreatedBy,
    Comment,
    CreatedAt,
    UpdatedAt,
    IssuedAt,
    ExpiresAt,
    RevokedAt,
    Wallet,
    /// A template's name, a token's label.
    Label,
    /// A token's role.
    Access,
    ArchivedAt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    /// One of a fixed set of names (state, role).
    Enum,
    Text,
    /// Several texts (types).
    List,
    Time,
}

impl Name {
    pub(super) fn ty(self) -> Ty {
        match self {
            Name::State | Name::Role | Name::Access => Ty::Enum,
            Name::Types => Ty::List,
            Name::CreatedAt
            | Name::UpdatedAt
            | Name::IssuedAt
            | Name::ExpiresAt
            | Name::RevokedAt
            | Name::ArchivedAt => Ty::Time,
            _ => Ty::Text,
        }
    }
}

/// Names as callers write them; aliases after the canonical name.
const RECORD_FIELDS: &[(&str, Name)] = &[
    ("id", Name::Id),
    ("state", Name::State),
    ("role", Name::Role),
    ("connection_id", Name::Connection),
    ("thid", Name::Thid),
    ("types", Name::Types),
    ("issuer", Name::Issuer),
    ("subject", Name::Subject),
    ("template_id", Name::Template),
    ("correlation_id", Name::Correlation),
    ("reference_id", Name::Reference),
    ("collection_id", Name::Collection),
    ("created_by", Name::CreatedBy),
    ("comment", Name::Comment),
    ("created_at", Name::CreatedAt),
    ("updated_at", Name::UpdatedAt),
    ("issued_at", Name::IssuedAt),
    ("expires_at", Name::ExpiresAt),
    ("revoked_at", Name::RevokedAt),
    ("connection", Name::Connection),
    ("type", Name::Types),
    ("issuer_did", Name::Issuer),
    ("subject_did", Name::Subject),
    ("template", Name::Template),
];

const CREDENTIAL_FIELDS: &[(&str, Name)] = &[
    ("id", Name::Id),
    ("thid", Name::Thid),
    ("types", Name::Types),
    ("issuer", Name::Issuer),
    ("subject", Name::Subject),
    ("created_by", Name::CreatedBy),
    ("created_at", Name::CreatedAt),
    ("issued_at", Name::IssuedAt),
    ("expires_at", Name::ExpiresAt),
    ("revoked_at", Name::RevokedAt),
    ("type", Name::Types),
    ("issuer_did", Name::Issuer),
    ("subject_did", Name::Subject),
    ("received_at", Name::CreatedAt),
];

const TEMPLATE_FIELDS: &[(&str, Name)] = &[
    ("id", Name::Id),
    ("name", Name::Label),
    ("types", Name::Types),
    ("issuer", Name::Issuer),
    ("created_by", Name::CreatedBy),
    ("created_at", Name::CreatedAt),
    ("archived_at", Name::ArchivedAt),
    ("type", Name::Types),
    ("issuer_did", Name::Issuer),
];

const TOKEN_FIELDS: &[(&str, Name)] = &[
    ("id", Name::Id),
    ("wallet_id", Name::Wallet),
    ("role", Name::Access),
    ("label", Name::Label),
    ("created_by", Name::CreatedBy),
    ("created_at", Name::CreatedAt),
    ("revoked_at", Name::RevokedAt),
    ("wallet", Name::Wallet),
];

/// A field a condition or sort key names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    Named(Name),
    /// `claims.a.b`: a path into the claims object (empty: all of it).
    Claim(Vec<String>),
    /// The status of a held credential (active, expired, revoked), a
    /// template (active, archived) or a token (active, revoked), derived
    /// from its times.
    Status,
}

/// `CredentialReceived`, `credential-received`, `RECORD_STATE_CREDENTIAL_RECEIVED`
/// and `credential_received` all name one state.
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The canonical spelling of an enum field's value, if it is one; the
/// proto enums' prefixes (`RECORD_STATE_`, `TOKEN_ROLE_`, …) may be kept.
fn canonical(kind: Kind, field: &Field, v: &str) -> Option<&'static str> {
    let v = squash(v);
    let (names, prefix): (Vec<&'static str>, &str) = match field {
        Field::Named(Name::State) => (
            RecordState::ALL.iter().map(|s| s.name()).collect(),
            "recordstate",
        ),
        Field::Named(Name::Role) => (vec![Role::Issuer.name(), Role::Holder.name()], "role"),
        Field::Named(Name::Access) => (
            TokenRole::ALL.iter().map(|r| r.name()).collect(),
            "tokenrole",
        ),
        // Only a held credential's status is a proto enum.
        _ if kind == Kind::Credentials => (kind.statuses().to_vec(), "credentialstatus"),
        _ => (kind.statuses().to_vec(), ""),
    };
    let v = v.strip_prefix(prefix).unwrap_or(&v);
    names.into_iter().find(|n| squash(n) == v)
}

impl Field {
    /// The field `name` of `kind`, or an error listing those there are.
    pub fn resolve(kind: Kind, name: &str) -> Result<Field> {
        if let Some(path) = name
            .strip_prefix("claims")
            .filter(|p| kind.has_claims() && (p.is_empty() || p.starts_with('.')))
        {
            let path: Vec<String> = path.split('.').skip(1).map(String::from).collect();
            if path.iter().any(String::is_empty) || path.len() > 8 {
                return Err(invalid(format!(
                    "field `{name}`: a claim path is `claims.a.b`, at most 8 names deep"
                )));
            }
            return Ok(Field::Claim(path));
        }
        if !kind.statuses().is_empty() && name == "status" {
            return Ok(Field::Status);
        }
        match kind.fields().iter().find(|(n, _)| *n == name) {
            Some((_, f)) => Ok(Field::Named(*f)),
            None => {
                let mut known: Vec<&str> = kind.fields().iter().map(|(n, _)| *n).collect();
                if !kind.statuses().is_empty() {
                    known.push("status");
                }
                if kind.has_claims() {
                    known.push("claims.<path>");
                }
                Err(invalid(format!(
                    "field `{name}` is not a field of {}: {}",
                    kind.noun(),
                    known.join(", ")
                )))
            }
        }
    }
}

impl Cond {
    /// The condition `field op value` on `kind`, checked: the field exists,
    /// the operator applies to its type, the value has that type.
    pub fn new(kind: Kind, field: &str, op: Op, value: Value) -> Result<Cond> {
        let f = Field::resolve(kind, field)?;
        let bad = |why: &str| Err(invalid(format!("field `{field}`: {why}")));
        let texts = match &value {
            Value::Text(t) => vec![t.clone()],
            Value::List(l) => l.clone(),
            _ => vec![],
        };
        if texts.iter().any(|t| t.len() > MAX_TEXT) {
            return bad(&format!("a value is over {MAX_TEXT} bytes"));
        }
        if let Value::List(l) = &value
            && (l.is_empty() || l.len() > MAX_IN)
        {
            return bad(&format!("$in takes 1 to {MAX_IN} values"));
        }
        let ty = match &f {
            Field::Named(n) => Some(n.ty()),
            Field::Status => Some(Ty::Enum),
            Field::Claim(_) => None,
        };
        match (ty, op, &value) {
            (Some(Ty::Time), Op::Eq | Op::Gt | Op::Gte | Op::Lt | Op::Lte, Value::Time(_)) => {}
            (Some(Ty::Time), ..) => {
                return bad("a time takes $eq, $gt, $gte, $lt or $lte and a time value");
            }
            (Some(Ty::Enum), Op::Eq, Value::Text(_)) | (Some(Ty::Enum), Op::In, Value::List(_)) => {
            }
            (Some(Ty::Enum), ..) => return bad("takes $eq with a text value or $in with a list"),
            (Some(Ty::Text), Op::Eq | Op::Like | Op::Fulltext, Value::Text(_))
            | (Some(Ty::List), Op::Eq | Op::Contains | Op::Like | Op::Fulltext, Value::Text(_))
            | (Some(Ty::Text | Ty::List), Op::In, Value::List(_)) => {}
            (Some(Ty::Text), ..) => {
                return bad(
                    "a text takes $eq, $like or $fulltext with a text value, or $in with a list",
                );
            }
            (Some(Ty::List), ..) => {
                return bad(
                    "a list takes $eq/$contains, $like or $fulltext with a text value, or $in with a list",
                );
            }
            (None, Op::Fulltext, Value::Text(_)) => {}
            (None, _, _) if matches!(&f, Field::Claim(p) if p.is_empty()) => {
                return bad("only $fulltext applies to all claims; name one: claims.<path>");
            }
            (None, Op::Eq | Op::Contains, Value::Text(_) | Value::Number(_) | Value::Bool(_))
            | (None, Op::In, Value::List(_))
            | (None, Op::Like, Value::Text(_))
            | (None, Op::Gt | Op::Gte | Op::Lt | Op::Lte, Value::Number(_) | Value::Time(_)) => {}
            (None, ..) => {
                return bad(&format!(
                    "{op:?} does not take a {} value on a claim",
                    value_type(&value)
                ));
            }
        }
        let value = match (ty, value) {
            (Some(Ty::Enum), Value::Text(t)) => Value::Text(enum_value(kind, &f, field, &t)?),
            (Some(Ty::Enum), Value::List(l)) => Value::List(
                l.iter()
                    .map(|t| enum_value(kind, &f, field, t))
                    .collect::<Result<_>>()?,
            ),
            (_, v) => v,
        };
        Ok(Cond {
            field: f,
            op,
            value,
        })
    }
}

fn enum_value(kind: Kind, f: &Field, field: &str, v: &str) -> Result<String> {
    canonical(kind, f, v)
        .map(String::from)
        .ok_or_else(|| invalid(format!("field `{field}`: `{v}` is not one of its values")))
}

fn value_type(v: &Value) -> &'static str {
    match v {
        Value::Text(_) => "text",
        Value::Time(_) => "time",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::List(_) => "list",
    }
}

impl SortKey {
    /// Sorting by `field` of `kind`: one value per document (not types,
    /// not all claims).
    pub fn new(kind: Kind, field: &str, descending: bool) -> Result<SortKey> {
        let f = Field::resolve(kind, field)?;
        match &f {
            Field::Named(n) if n.ty() == Ty::List => Err(invalid(format!(
                "sort: `{field}` is a list; sort by one value"
            ))),
            Field::Claim(p) if p.is_empty() => {
                Err(invalid("sort: name one claim, claims.<path>".into()))
            }
            _ => Ok(SortKey {
                field: f,
                descending,
            }),
        }
    }
}
