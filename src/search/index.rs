//! Index keys. Every key of one document ends with its doc key (creation
//! time, big-endian, then id), so each run of keys for one value is in
//! creation order and runs merge without sorting:
//!
//! - every document: `kind wallet 0 · 0 · doc`
//! - a text value:   `kind wallet 0 · field · value · doc`
//! - a time:         `kind wallet 0 · field · minute (8 bytes) · doc`
//!
//! Records keep role and state together (see [`state_run`]): their
//! entries' values name the state; every other entry's value is empty.
//!
//! Times other than creation are kept by the minute, so the changes of a
//! record within a minute (a whole flow, usually) move no key; a range is
//! read by whole minutes and checked exactly on the documents. Empty texts
//! are not kept (`= ""` is checked on the documents).
//!
//! A text value up to 24 bytes is kept (escaped, terminated); a longer one
//! (a DID) by 16 bytes of its SHA-256, so keys stay short. A 128-bit
//! collision cannot be made on purpose, and a found record is checked
//! against the filter again anyway.

use sha2::{Digest, Sha256};

use super::docs::Doc;
use super::fields::{Kind, Name, Ty};
use crate::store::RecordState;

/// The version of a kind's keys, bumped when they change: the store
/// rebuilds that kind's part of the index at open, and only that.
pub fn index_version(kind: Kind) -> &'static str {
    match kind {
        // "3" was the whole index's version when it held only these two.
        // "4" was a layout with every open state in one run (12f76fa).
        Kind::Records => "5",
        Kind::Credentials => "3",
        Kind::Templates | Kind::Tokens => "1",
    }
}

/// The first byte of every index key of `kind`.
pub fn kind_prefix(kind: Kind) -> [u8; 1] {
    [kind_byte(kind)]
}

const ALL: u8 = 0;
const SHORT: usize = 24;

fn kind_byte(k: Kind) -> u8 {
    match k {
        Kind::Records => b'r',
        Kind::Credentials => b'c',
        Kind::Templates => b't',
        Kind::Tokens => b'k',
    }
}

fn field_prefix(kind: Kind, wallet: &str, field: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(wallet.len() + 48);
    k.push(kind_byte(kind));
    escape(wallet.as_bytes(), &mut k);
    k.push(field);
    k
}

/// Escapes 0 as `0 ff` and ends with `0 1`, so no value's key is a prefix
/// of another's.
fn escape(v: &[u8], out: &mut Vec<u8>) {
    for b in v {
        out.push(*b);
        if *b == 0 {
            out.push(0xff);
        }
    }
    out.extend([0, 1]);
}

/// A document's place: creation time (clamped at 0), then id.
pub(super) fn doc_key(created_ms: i64, id: &str) -> Vec<u8> {
    let mut k = (created_ms.max(0) as u64).to_be_bytes().to_vec();
    k.extend(id.as_bytes());
    k
}

/// The id a doc key ends with.
pub(super) fn doc_id(doc: &[u8]) -> String {
    String::from_utf8_lossy(doc.get(8..).unwrap_or_default()).into_owned()
}

/// Keys of every document of the wallet: `prefix · doc`.
pub(super) fn all_prefix(kind: Kind, wallet: &str) -> Vec<u8> {
    field_prefix(kind, wallet, ALL)
}

/// Keys of the documents whose text field `n` has `value`: `prefix · doc`.
pub(super) fn text_prefix(kind: Kind, wallet: &str, n: Name, value: &str) -> Vec<u8> {
    let mut k = field_prefix(kind, wallet, n as u8);
    if value.len() <= SHORT {
        k.push(1);
        escape(value.as_bytes(), &mut k);
    } else {
        k.push(2);
        k.extend(&Sha256::digest(value.as_bytes())[..16]);
    }
    k
}

/// The run a record with `role` in `state` is kept in, and the value its
/// entry must carry to be in that state (None: every entry is). A state a
/// record only passes through (its message waiting in the outbox, its
/// credential being made) shares a run with the state it waits in just
/// before or after (see [`place`]), so a flow's steps between them rewrite
/// one entry's value instead of moving a key, each step one write less. A
/// query on such a state also reads (and skips) its partners' keys; the
/// states passed through hold few records at a time.
pub(super) fn state_run(wallet: &str, role: &str, state: &str) -> (Vec<u8>, Option<Vec<u8>>) {
    let Some(s) = RecordState::ALL.iter().copied().find(|s| s.name() == state) else {
        return (state_prefix(wallet, role, state), None);
    };
    let shared = RecordState::ALL
        .iter()
        .filter(|t| place(**t) == place(s))
        .count()
        > 1;
    let run = state_prefix(wallet, role, place(s).name());
    (run, shared.then(|| state.as_bytes().to_vec()))
}

/// The state whose run `s` is kept in.
fn place(s: RecordState) -> RecordState {
    match s {
        RecordState::OfferPending => RecordState::OfferSent,
        RecordState::CredentialPending | RecordState::CredentialGenerated => {
            RecordState::RequestReceived
        }
        RecordState::RequestPending => RecordState::RequestSent,
        s => s,
    }
}

fn state_prefix(wallet: &str, role: &str, place: &str) -> Vec<u8> {
    text_prefix(
        Kind::Records,
        wallet,
        Name::State,
        &format!("{role}.{place}"),
    )
}

/// Every run a record with `role` may be kept in.
pub(super) fn role_runs(wallet: &str, role: &str) -> Vec<Vec<u8>> {
    let mut runs: Vec<_> = RecordState::ALL
        .iter()
        .map(|s| state_run(wallet, role, s.name()).0)
        .collect();
    runs.sort();
    runs.dedup();
    runs
}

/// Keys of time field `n`: `prefix · ms · doc`.
pub(super) fn time_prefix(kind: Kind, wallet: &str, n: Name) -> Vec<u8> {
    field_prefix(kind, wallet, n as u8)
}

pub(super) fn time_bytes(ms: i64) -> [u8; 8] {
    (ms.max(0) as u64).to_be_bytes()
}

/// The minute a time index keeps `ms` under.
pub(super) const MINUTE: i64 = 60_000;

pub(super) fn minute(ms: i64) -> i64 {
    ms - ms.rem_euclid(MINUTE)
}

/// One index entry: its key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Every index entry of `d`, sorted by key: what the store writes with
/// it, and removes with its old version.
pub fn entries<D: Doc>(d: &D) -> Vec<Entry> {
    let kind = D::KIND;
    let wallet = d.wallet();
    let doc = doc_key(d.created_ms(), d.id());
    let mut es: Vec<Entry> = vec![([all_prefix(kind, wallet), doc.clone()].concat(), vec![])];
    for &n in kind.indexed() {
        if kind == Kind::Records && n == Name::State {
            let (role, state) = (d.texts(Name::Role), d.texts(Name::State));
            let (Some(role), Some(state)) = (role.first(), state.first()) else {
                continue;
            };
            let (run, _) = state_run(wallet, role, state);
            es.push(([run, doc.clone()].concat(), state.as_bytes().to_vec()));
        } else if n.ty() == Ty::Time {
            if let Some(t) = d.time(n) {
                let mut k = time_prefix(kind, wallet, n);
                k.extend(time_bytes(minute(t)));
                k.extend(&doc);
                es.push((k, vec![]));
            }
        } else {
            for v in d.texts(n).into_iter().filter(|v| !v.is_empty()) {
                es.push((
                    [text_prefix(kind, wallet, n, v), doc.clone()].concat(),
                    vec![],
                ));
            }
        }
    }
    es.sort();
    es.dedup_by(|a, b| a.0 == b.0);
    es
}
