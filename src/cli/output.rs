//! Printing responses: aligned tables and `key: value` lines for people,
//! the response message as JSON with `--json`. Each message type is turned
//! into JSON once ([`Show::fields`]); both forms are printed from that.

use std::io::{self, Write};

use serde_json::{Map, Value};

use agentd::rpc::proto;

/// A response message, as an ordered list of its fields (enums by name).
pub trait Show {
    /// The fields a table row shows.
    const COLUMNS: &'static [&'static str];
    fn fields(&self) -> Fields;

    fn to_json(&self) -> Value {
        json(&self.fields())
    }
}

/// A message's fields in proto order.
pub type Fields = Vec<(&'static str, Field)>;

/// A field: a JSON value, or a nested message (kept in order for people).
pub enum Field {
    Value(Value),
    Message(Fields),
}

fn json(fields: &Fields) -> Value {
    let object = fields.iter().map(|(k, f)| {
        let v = match f {
            Field::Value(v) => v.clone(),
            Field::Message(m) => json(m),
        };
        (k.to_string(), v)
    });
    Value::Object(object.collect())
}

/// `fields!(m; a, b: name<Enum>, c: nested)`: the pairs of [`Show::fields`].
macro_rules! fields {
    ($m:expr; $($f:ident $(: $kind:ident $(<$e:ty>)?)?),* $(,)?) => {
        vec![$((stringify!($f), fields!(@value $m.$f $(, $kind $(<$e>)?)?))),*]
    };
    (@value $v:expr) => { Field::Value(serde_json::json!($v)) };
    (@value $v:expr, name<$e:ty>) => { Field::Value(Value::String(enum_name::<$e>($v))) };
    (@value $v:expr, nested) => {
        $v.as_ref().map_or(Field::Value(Value::Null), |m| Field::Message(m.fields()))
    };
}

/// A prost enum's variant name (`CredentialReceived`); the number if unknown.
pub fn enum_name<E: TryFrom<i32> + std::fmt::Debug>(v: i32) -> String {
    E::try_from(v).map_or_else(|_| v.to_string(), |e| format!("{e:?}"))
}

/// Parses a prost enum from its variant name in any case or spelling, with
/// or without the proto prefix (`credential-received`, `CredentialReceived`,
/// `RECORD_STATE_CREDENTIAL_RECEIVED`).
pub fn parse_enum<E: TryFrom<i32> + std::fmt::Debug>(s: &str) -> Result<i32, String> {
    let squash = |s: &str| {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_lowercase()
    };
    let want = squash(s);
    // The proto prefix is the enum's name: RECORD_STATE_ for RecordState.
    let prefix = squash(
        std::any::type_name::<E>()
            .rsplit("::")
            .next()
            .unwrap_or_default(),
    );
    // Variants are numbered from 0 without gaps; 0 (unspecified) is no filter.
    let names: Vec<(i32, String)> = (1..)
        .map_while(|i| E::try_from(i).ok().map(|e| (i, format!("{e:?}"))))
        .collect();
    names
        .iter()
        .find(|(_, name)| {
            let name = squash(name);
            want == name || want == format!("{prefix}{name}")
        })
        .map(|(i, _)| *i)
        .ok_or_else(|| {
            let all: Vec<&str> = names.iter().map(|(_, n)| n.as_str()).collect();
            format!("expected one of {}", all.join(", "))
        })
}

impl Show for proto::Wallet {
    const COLUMNS: &'static [&'static str] = &["id", "label", "created_at_ms"];
    fn fields(&self) -> Fields {
        fields!(self; id, label, created_at_ms)
    }
}

impl Show for proto::Token {
    const COLUMNS: &'static [&'static str] = &["id", "wallet_id", "role", "label", "revoked_at_ms"];
    fn fields(&self) -> Fields {
        fields!(self; id, wallet_id, role: name<proto::TokenRole>, label, created_at_ms,
            created_by, revoked_at_ms)
    }
}

impl Show for proto::CreateTokenResponse {
    const COLUMNS: &'static [&'static str] = &["id", "role", "secret"];
    fn fields(&self) -> Fields {
        let t = self.token.clone().unwrap_or_default();
        let mut f = t.fields();
        f.extend(fields!(self; secret));
        f
    }
}

impl Show for proto::Did {
    const COLUMNS: &'static [&'static str] = &["method", "key_type", "purpose", "did"];
    fn fields(&self) -> Fields {
        fields!(self; did, method: name<proto::DidMethod>, wallet_id, created_at_ms, purpose,
            key_type: name<proto::KeyType>)
    }
}

impl Show for proto::ResolveDidResponse {
    const COLUMNS: &'static [&'static str] = &[];
    fn fields(&self) -> Fields {
        // The document itself, not a string holding it.
        let doc = serde_json::from_str(&self.did_document_json)
            .unwrap_or_else(|_| Value::String(self.did_document_json.clone()));
        vec![("did_document", Field::Value(doc))]
    }
}

impl Show for proto::Connection {
    const COLUMNS: &'static [&'static str] = &["id", "state", "role", "label", "updated_at_ms"];
    fn fields(&self) -> Fields {
        fields!(self;
            id, wallet_id, state: name<proto::ConnectionState>, role: name<proto::ConnectionRole>,
            our_did, their_did, invitation_id, label, created_at_ms, updated_at_ms)
    }
}

impl Show for proto::CreateInvitationResponse {
    const COLUMNS: &'static [&'static str] = &[];
    fn fields(&self) -> Fields {
        fields!(self; connection: nested, invitation_url, invitation_json)
    }
}

impl Show for proto::PingResponse {
    const COLUMNS: &'static [&'static str] = &[];
    fn fields(&self) -> Fields {
        fields!(self; ping_id, response_received, round_trip_ms)
    }
}

impl Show for proto::DiscoverFeaturesResponse {
    const COLUMNS: &'static [&'static str] = &[];
    fn fields(&self) -> Fields {
        fields!(self; protocols)
    }
}

impl Show for proto::CredentialRecord {
    const COLUMNS: &'static [&'static str] =
        &["id", "role", "state", "thid", "types", "updated_at_ms"];
    fn fields(&self) -> Fields {
        fields!(self;
            id, wallet_id, role: name<proto::Role>, state: name<proto::RecordState>, version,
            thid, connection_id, our_did, their_did, claims_json, types, schema_id,
            validity_period_secs, automatic_issuance, idempotency_key, issuer_did, subject_did,
            credential_id, ack_received, problem, comment, meta_retries, meta_next_retry_ms,
            meta_last_failure, expires_at_ms, created_at_ms, updated_at_ms, created_by,
            updated_by, status_list_credential, status_list_index, revoked_at_ms,
            revocation_reason, revoked_by, template_id, correlation_id, reference_id,
            collection_id, data_deleted_at_ms)
    }
}

impl Show for proto::Credential {
    const COLUMNS: &'static [&'static str] = &["id", "status", "types", "claims_json", "expires"];
    fn fields(&self) -> Fields {
        fields!(self;
            id, wallet_id, record_id, thid, issuer, subject, types, claims_json, jwt,
            not_before, expires, received_at_ms, created_by,
            status: name<proto::CredentialStatus>, revoked_at_ms, revocation_reason,
            status_checked_at_ms, status_check_error)
    }
}

impl Show for proto::Template {
    const COLUMNS: &'static [&'static str] = &["id", "name", "types", "archived_at_ms"];
    fn fields(&self) -> Fields {
        // The schema itself, not a string holding it.
        let schema = serde_json::from_str(&self.schema_json)
            .unwrap_or_else(|_| Value::String(self.schema_json.clone()));
        let mut f = fields!(self; id, wallet_id, name, types, contexts);
        f.push(("schema", Field::Value(schema)));
        f.extend(
            fields!(self; schema_url, default_validity_secs, max_validity_secs, issuer_did,
            created_at_ms, created_by, archived_at_ms),
        );
        f
    }
}

impl Show for proto::TrustedIssuer {
    const COLUMNS: &'static [&'static str] = &["did", "label", "added_at_ms"];
    fn fields(&self) -> Fields {
        fields!(self; wallet_id, did, label, added_at_ms, added_by)
    }
}

impl Show for proto::IssueCustodialResponse {
    const COLUMNS: &'static [&'static str] = &[];
    fn fields(&self) -> Fields {
        fields!(self;
            was_offered, was_accepted, issuer_record: nested, holder_record: nested,
            credential: nested)
    }
}

impl Show for proto::RecordEvent {
    const COLUMNS: &'static [&'static str] = &[
        "seq",
        "wallet_id",
        "role",
        "old_state",
        "new_state",
        "record_id",
        "reason",
    ];
    fn fields(&self) -> Fields {
        fields!(self;
            seq, wallet_id, record_id, thid, role: name<proto::Role>,
            old_state: name<proto::RecordState>, new_state: name<proto::RecordState>, reason,
            at_ms)
    }
}

/// A list response: its items, under the field they have in the message.
pub trait Listed {
    type Item: Show;
    const FIELD: &'static str;
    /// Items, the next page's token, and the total if the call counts.
    fn into_parts(self) -> (Vec<Self::Item>, String, Option<proto::Total>);
}

macro_rules! listed {
    ($($response:ident: $item:ident in $field:ident $($total:ident)?),* $(,)?) => {$(
        impl Listed for proto::$response {
            type Item = proto::$item;
            const FIELD: &'static str = stringify!($field);
            fn into_parts(self) -> (Vec<proto::$item>, String, Option<proto::Total>) {
                (self.$field, self.next_page_token, listed!(@total self $($total)?))
            }
        }
    )*};
    (@total $s:ident total) => { $s.total };
    (@total $s:ident) => { None };
}

listed!(
    ListTokensResponse: Token in tokens total,
    ListWalletsResponse: Wallet in wallets,
    ListDidsResponse: Did in dids,
    ListConnectionsResponse: Connection in connections,
    ListRecordsResponse: CredentialRecord in records total,
    ListCredentialsResponse: Credential in credentials total,
    ListTrustedIssuersResponse: TrustedIssuer in issuers,
    ListTemplatesResponse: Template in templates total,
);

/// Where and how responses are printed.
pub struct Output {
    pub json: bool,
}

impl Output {
    /// One message: `key: value` lines, or its JSON.
    pub fn one(&self, item: &impl Show) -> io::Result<()> {
        if self.json {
            print(item.to_json())
        } else {
            print_lines(&item.fields(), "")
        }
    }

    /// A list: a table, or the response message's JSON (`{"<field>": [...],
    /// "next_page_token": ...}`). A next page is also named on stderr.
    pub fn list<L: Listed>(
        &self,
        items: &[L::Item],
        next_page_token: &str,
        total: Option<&proto::Total>,
    ) -> io::Result<()> {
        if self.json {
            let mut m = Map::new();
            m.insert(L::FIELD.into(), items.iter().map(Show::to_json).collect());
            m.insert("next_page_token".into(), next_page_token.into());
            if let Some(t) = total {
                m.insert("total_size".into(), t.size.into());
                m.insert("total_exact".into(), t.exact.into());
            }
            return print(Value::Object(m));
        }
        let rows: Vec<Vec<String>> = items.iter().map(row).collect();
        let columns: Vec<String> = L::Item::COLUMNS.iter().map(|c| c.to_uppercase()).collect();
        let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for r in std::iter::once(&columns).chain(&rows) {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            print(cells.join("  ").trim_end())?;
        }
        if let Some(t) = total {
            let at_least = if t.exact { "" } else { "at least " };
            eprintln!("{at_least}{} matching", t.size);
        }
        if !next_page_token.is_empty() {
            eprintln!("more: --page-token {next_page_token}");
        }
        Ok(())
    }
}

/// One line on stdout. Unlike `println!`, a closed pipe (`| head`) is an
/// error to stop on, not a panic.
pub fn print(line: impl std::fmt::Display) -> io::Result<()> {
    writeln!(io::stdout().lock(), "{line}")
}

/// A table row: the item's columns, as text.
fn row<T: Show>(item: &T) -> Vec<String> {
    let fields = item.fields();
    T::COLUMNS
        .iter()
        .map(|c| {
            fields
                .iter()
                .find(|(k, _)| k == c)
                .map_or_else(String::new, |(_, f)| text(f))
        })
        .collect()
}

fn print_lines(fields: &Fields, indent: &str) -> io::Result<()> {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, f) in fields {
        match f {
            Field::Message(m) => {
                print(format_args!("{indent}{k}:"))?;
                print_lines(m, &format!("{indent}  "))?;
            }
            Field::Value(_) => print(format_args!(
                "{indent}{:<width$} {}",
                format!("{k}:"),
                text(f)
            ))?,
        }
    }
    Ok(())
}

/// Strings bare, lists comma-separated, anything else as compact JSON.
fn text(f: &Field) -> String {
    fn value(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(a) => a.iter().map(value).collect::<Vec<_>>().join(", "),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
    match f {
        Field::Value(v) => value(v),
        Field::Message(m) => json(m).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::RecordState;

    #[test]
    fn enums_parse_in_any_spelling_and_print_by_name() {
        let received = RecordState::CredentialReceived as i32;
        for s in [
            "credential-received",
            "CredentialReceived",
            "credential_received",
            "RECORD_STATE_CREDENTIAL_RECEIVED",
        ] {
            assert_eq!(parse_enum::<RecordState>(s), Ok(received), "{s}");
        }
        for s in ["received", "unspecified", "xcredentialreceived", ""] {
            assert!(parse_enum::<RecordState>(s).is_err(), "{s}");
        }
        assert_eq!(parse_enum::<proto::DidMethod>("peer2"), Ok(2));
        assert_eq!(parse_enum::<proto::KeyType>("secp256k1"), Ok(2));
        assert_eq!(parse_enum::<proto::KeyType>("P-256"), Ok(3));
        assert_eq!(enum_name::<RecordState>(received), "CredentialReceived");
        assert_eq!(enum_name::<RecordState>(99), "99");
    }

    #[test]
    fn nested_messages_are_json_objects_in_json_and_indented_for_people() {
        let r = proto::CreateInvitationResponse {
            connection: Some(proto::Connection {
                id: "c1".into(),
                state: proto::ConnectionState::Active as i32,
                ..Default::default()
            }),
            invitation_url: "http://x/didcomm?_oob=e30".into(),
            ..Default::default()
        };
        let v = r.to_json();
        assert_eq!(v["connection"]["id"], "c1");
        assert_eq!(v["connection"]["state"], "Active");
        assert_eq!(v["invitation_url"], "http://x/didcomm?_oob=e30");
        let fields = r.fields();
        let Field::Message(connection) = &fields[0].1 else {
            panic!("connection is not nested");
        };
        // Proto order, not alphabetical.
        assert_eq!(connection[0].0, "id");
        assert_eq!(text(&connection[2].1), "Active");
    }
}
