//! The index plans against the definition: random filter trees over random
//! records, credentials, templates and tokens, every page, compared with a plain evaluation
//! of the same filter over the same documents.

use std::cmp::Ordering;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::store::{CredentialRecord, RecordState, Store, StoredCredential, Template, Token};

mod bounds;

const WALLET: &str = "w";
/// "Now" for status conditions: some credentials have expired by then.
const NOW: i64 = 1_015_500;
const LONG_DID: &str = "did:peer:2.Ez6LSlongerthantwentyfourbytes.Vz6Mkalsolong";

fn pick<'a>(seed: u64, shift: u32, of: &[&'a str]) -> &'a str {
    of[((seed >> shift) % of.len() as u64) as usize]
}

/// A record made from `seed`: fields drawn from small sets so that
/// conditions match some and miss others, creation times with ties.
fn record(i: usize, seed: u64) -> CredentialRecord {
    let bit = |n: u32| (seed >> n) & 1 == 1;
    let time = |n: u32, base: i64| base + ((seed >> n) % 20) as i64;
    let types: Vec<&str> = ["A", "B", "C"]
        .into_iter()
        .enumerate()
        .filter(|(k, _)| bit(10 + *k as u32))
        .map(|(_, t)| t)
        .collect();
    serde_json::from_value(json!({
        "id": format!("rec-{i:04}"),
        "wallet_id": if bit(63) && bit(62) { "other" } else { WALLET },
        "role": pick(seed, 1, &["Issuer", "Holder"]),
        "state": pick(seed, 2, &[
            "OfferSent",
            "OfferPending",
            "RequestReceived",
            "RequestSent",
            "CredentialSent",
            "CredentialReceived",
            "Abandoned",
        ]),
        "version": 1,
        // One record per thread in a wallet, as the store keeps them.
        "thid": format!("thread-{i}"),
        "connection_id": pick(seed, 5, &["c0", "c1", "c2"]),
        "our_did": "did:key:ours",
        "their_did": "did:key:theirs",
        "claims": {
            "name": pick(seed, 14, &["Alice", "Bob", "alice smith", "Carol"]),
            "age": (seed >> 16) % 50,
            "degree": { "name": pick(seed, 22, &["BSc", "MSc"]) },
            "tags": [pick(seed, 24, &["x", "y"]), "z"],
            "born": pick(seed, 26, &["1990-01-02", "2001-05-06T07:08:09Z", "not a date"]),
        },
        "types": types,
        "schema_id": null,
        "validity_period_secs": 0,
        "automatic_issuance": false,
        "idempotency_key": null,
        "issuer_did": pick(seed, 28, &["did:key:short", LONG_DID]),
        "subject_did": if bit(30) { json!(pick(seed, 31, &["s0", "s1"])) } else { json!(null) },
        "challenge": "",
        "credential_id": null,
        "ack_received": false,
        "problem": null,
        "comment": if bit(33) { json!("a comment with x") } else { json!(null) },
        "expires_at_ms": if bit(34) { json!(time(35, 1_010_000)) } else { json!(null) },
        "deadline_ms": null,
        "meta_retries": 0,
        "meta_next_retry_ms": null,
        "meta_last_failure": null,
        "created_at_ms": time(40, 1_000_000),
        "updated_at_ms": time(45, 1_000_010),
        "created_by": pick(seed, 50, &["", "tok"]),
        "template_id": if bit(51) { json!("t0") } else { json!(null) },
        "revocation": if bit(52) { json!({"at_ms": time(53, 1_000_020), "reason": "", "by": ""}) } else { json!(null) },
        "issued_at_ms": if bit(58) { json!(time(59, 1_000_005)) } else { json!(null) },
    }))
    .expect("a record")
}

fn credential(i: usize, seed: u64) -> StoredCredential {
    let r = record(i, seed);
    let bit = |n: u32| (seed >> n) & 1 == 1;
    StoredCredential {
        id: format!("cred-{i:04}"),
        wallet_id: r.wallet_id,
        record_id: r.id,
        thid: r.thid,
        issuer: r.issuer_did,
        subject: r.subject_did.unwrap_or_default(),
        types: r.types,
        claims: r.claims,
        jwt: String::new(),
        not_before: 1_000 + (seed >> 36) % 20,
        expires: bit(41).then_some(1_010 + (seed >> 42) % 10),
        received_at_ms: r.created_at_ms,
        created_by: r.created_by,
        revocation: r.revocation,
        status_checked_at_ms: None,
        status_check_error: None,
    }
}

fn template(i: usize, seed: u64) -> Template {
    let r = record(i, seed);
    let bit = |n: u32| (seed >> n) & 1 == 1;
    Template {
        id: format!("tpl-{i:04}"),
        wallet_id: r.wallet_id,
        name: pick(seed, 36, &["Degree", "Badge", "degree of honour"]).into(),
        types: r.types,
        contexts: vec![],
        schema: json!({"type": "object"}),
        default_validity_secs: 0,
        max_validity_secs: 0,
        issuer_did: bit(38).then_some(r.issuer_did),
        created_at_ms: r.created_at_ms,
        created_by: r.created_by,
        archived_at_ms: bit(39).then_some(r.updated_at_ms),
    }
}

/// Tokens of several wallets: a token search spans them all.
fn token(i: usize, seed: u64) -> Token {
    let r = record(i, seed);
    Token {
        id: format!("tok-{i:04}"),
        wallet_id: pick(seed, 36, &[WALLET, "other", "w2"]).into(),
        role: crate::store::TokenRole::ALL[((seed >> 38) % 4) as usize],
        label: pick(seed, 14, &["ci", "Alice's laptop", ""]).into(),
        hash: vec![],
        rate_per_sec: 0,
        created_at_ms: r.created_at_ms,
        created_by: r.created_by,
        revoked_at_ms: r.revocation.map(|v| v.at_ms),
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn list(of: &[&str]) -> Value {
    Value::List(of.iter().map(|s| s.to_string()).collect())
}

/// Conditions valid on records and credentials, and those of one kind.
fn leaves(kind: Kind) -> Vec<(&'static str, Op, Value)> {
    use Op::*;
    let t = Value::Time;
    match kind {
        Kind::Templates => return template_leaves(),
        Kind::Tokens => return token_leaves(),
        Kind::Records | Kind::Credentials => {}
    }
    let mut v = vec![
        ("types", Contains, text("A")),
        ("types", Eq, text("B")),
        ("types", In, list(&["A", "C"])),
        ("types", Like, text("_")),
        ("issuer", Eq, text(LONG_DID)),
        ("issuer", Eq, text("did:key:short")),
        ("issuer", Like, text("did:peer:%")),
        ("subject", Eq, text("s0")),
        ("subject", In, list(&["s1", "nobody"])),
        ("thid", Eq, text("thread-3")),
        ("thid", In, list(&["thread-1", "thread-5", "thread-99"])),
        ("created_by", Eq, text("")),
        ("issued_at", Lte, t(1_000_011)),
        ("created_by", Eq, text("tok")),
        ("created_at", Gte, t(1_000_010)),
        ("created_at", Lt, t(1_000_005)),
        ("created_at", Eq, t(1_000_007)),
        ("issued_at", Gt, t(1_000_009)),
        ("expires_at", Lte, t(1_015_000)),
        ("revoked_at", Gte, t(1_000_030)),
        ("revoked_at", Eq, t(1_000_025)),
        ("claims.name", Eq, text("Alice")),
        ("claims.name", Like, text("%li%")),
        ("claims.name", In, list(&["Bob", "Carol"])),
        ("claims.age", Gt, Value::Number(25.0)),
        ("claims.age", Eq, Value::Number(7.0)),
        ("claims.degree.name", Eq, text("MSc")),
        ("claims.tags", Contains, text("x")),
        ("claims.born", Lt, t(946_684_800_000)),
        ("claims", Fulltext, text("ALICE")),
        ("claims.name", Fulltext, text("smith alice")),
    ];
    match kind {
        Kind::Records => v.extend([
            ("state", Eq, text("CredentialSent")),
            ("state", In, list(&["offer-sent", "ABANDONED"])),
            ("state", Eq, text("RequestReceived")),
            (
                "state",
                In,
                list(&["OfferPending", "request_sent", "CredentialReceived"]),
            ),
            ("role", Eq, text("holder")),
            ("connection_id", Eq, text("c1")),
            ("connection_id", In, list(&["c0", "c2"])),
            ("template_id", Eq, text("t0")),
            ("comment", Like, text("%x")),
            ("updated_at", Lt, t(1_000_020)),
            ("updated_at", Eq, t(1_000_015)),
            ("updated_at", Gt, t(1_000_012)),
        ]),
        Kind::Credentials => v.extend([
            ("status", Eq, text("active")),
            ("status", Eq, text("EXPIRED")),
            ("status", In, list(&["revoked", "expired"])),
        ]),
        Kind::Templates | Kind::Tokens => {}
    }
    v
}

fn template_leaves() -> Vec<(&'static str, Op, Value)> {
    use Op::*;
    vec![
        ("id", Eq, text("tpl-0003")),
        ("name", Eq, text("Degree")),
        ("name", Like, text("%egree%")),
        ("name", Fulltext, text("DEGREE")),
        ("types", Contains, text("A")),
        ("type", In, list(&["B", "C"])),
        ("issuer", Eq, text(LONG_DID)),
        ("issuer_did", Eq, text("did:key:short")),
        ("created_by", Eq, text("tok")),
        ("created_at", Gte, Value::Time(1_000_010)),
        ("archived_at", Lt, Value::Time(1_000_020)),
        ("status", Eq, text("active")),
        ("status", Eq, text("ARCHIVED")),
        ("status", In, list(&["active", "archived"])),
    ]
}

fn token_leaves() -> Vec<(&'static str, Op, Value)> {
    use Op::*;
    vec![
        ("wallet_id", Eq, text(WALLET)),
        ("wallet", In, list(&["other", "w2"])),
        ("role", Eq, text("admin")),
        ("role", In, list(&["TOKEN_ROLE_ISSUER", "auditor"])),
        ("label", Like, text("%a%")),
        ("label", Eq, text("")),
        ("created_by", Eq, text("tok")),
        ("created_at", Lt, Value::Time(1_000_005)),
        ("revoked_at", Gte, Value::Time(1_000_030)),
        ("status", Eq, text("revoked")),
        ("status", Eq, text("active")),
    ]
}

fn filter(kind: Kind) -> impl Strategy<Value = Filter> {
    let leaf = (0..leaves(kind).len()).prop_map(move |i| {
        let (f, op, v) = leaves(kind).swap_remove(i);
        Filter::Cond(Cond::new(kind, f, op, v).expect("a valid condition"))
    });
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(Filter::And),
            prop::collection::vec(inner.clone(), 1..4).prop_map(Filter::Or),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

fn sorts(kind: Kind) -> impl Strategy<Value = Vec<SortKey>> {
    let names: &[&str] = match kind {
        Kind::Records => &["created_at", "updated_at", "claims.age", "state", "subject"],
        Kind::Credentials => &["created_at", "expires_at", "claims.name", "status"],
        Kind::Templates => &["created_at", "name", "archived_at", "status"],
        Kind::Tokens => &["created_at", "wallet_id", "role", "label", "status"],
    };
    prop::collection::vec((0..names.len(), any::<bool>()), 0..3).prop_map(move |keys| {
        keys.into_iter()
            .map(|(i, desc)| SortKey::new(kind, names[i], desc).expect("a sort key"))
            .collect()
    })
}

/// A document's sort value, written out again here so the pages are
/// checked against something other than their own code.
fn value_of<D: Doc>(d: &D, f: &Field) -> (u8, String, f64) {
    let json = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => (1, s.clone(), 0.0),
        Some(serde_json::Value::Number(n)) => (2, String::new(), n.as_f64().unwrap()),
        _ => (0, String::new(), 0.0),
    };
    match f {
        Field::Named(n) => match d.time(*n) {
            Some(t) => (2, String::new(), t as f64),
            None => match d.texts(*n).first() {
                Some(s) => (1, s.to_string(), 0.0),
                None => (0, String::new(), 0.0),
            },
        },
        Field::Status => (1, eval::status(d, NOW).to_string(), 0.0),
        Field::Claim(p) => json(d.claims().get(&p[0])),
    }
}

/// Where a search of `D` runs: the test wallet, or every wallet for tokens.
fn scope<D: Doc>() -> &'static str {
    if D::KIND == Kind::Tokens {
        ACROSS_WALLETS
    } else {
        WALLET
    }
}

fn expected<D: Doc + Clone>(docs: &[D], q: &Query) -> Vec<String> {
    let mut hits: Vec<&D> = docs
        .iter()
        .filter(|d| d.wallet() == scope::<D>())
        .filter(|d| q.filter.as_ref().is_none_or(|f| matches(f, *d, NOW)))
        .collect();
    let place = |d: &D| (d.created_ms(), d.id().to_string());
    let by_creation_only = match q.sort.as_slice() {
        [] => Some(false),
        [k] if k.field == Field::Named(fields::Name::CreatedAt) => Some(k.descending),
        _ => None,
    };
    hits.sort_by(|a, b| match by_creation_only {
        Some(desc) => {
            let o = place(a).cmp(&place(b));
            if desc { o.reverse() } else { o }
        }
        None => {
            for k in &q.sort {
                let (x, y) = (value_of(*a, &k.field), value_of(*b, &k.field));
                let o = x.0.cmp(&y.0).then(x.1.cmp(&y.1)).then(x.2.total_cmp(&y.2));
                let o = if k.descending { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            place(a).cmp(&place(b))
        }
    });
    hits.iter().map(|d| d.id().to_string()).collect()
}

/// Every page of `q`, `size` at a time, calling `between` after each.
fn all_pages<D: Doc>(
    store: &Store,
    q: &Query,
    size: u32,
    mut between: impl FnMut(),
) -> (Vec<String>, u64, bool) {
    let mut ids = Vec::new();
    let mut token = String::new();
    let (mut total, mut exact) = (0, true);
    loop {
        let found: Found<D> = run(store, scope::<D>(), q, size, &token, NOW).expect("a page");
        assert!(found.items.len() <= size as usize);
        ids.extend(found.items.iter().map(|d| d.id().to_string()));
        if token.is_empty() {
            (total, exact) = (found.total_size, found.total_exact);
        }
        if found.next_token.is_empty() {
            return (ids, total, exact);
        }
        token = found.next_token;
        between();
    }
}

fn store_with<D>(
    docs: &[D],
    put: impl Fn(&crate::store::StoreTx, &D) -> crate::error::Result<()>,
) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    for chunk in docs.chunks(500) {
        store
            .transact(|tx| chunk.iter().try_for_each(|d| put(tx, d)))
            .unwrap();
    }
    (dir, store)
}

/// A store with `docs` written first in other states (each record's drawn
/// from its number), then moved to their own in a later transaction: the
/// index follows records from state to state, within a role's open run
/// and between runs.
fn moved_into_place(docs: &[CredentialRecord]) -> (tempfile::TempDir, Store) {
    let before: Vec<CredentialRecord> = docs
        .iter()
        .map(|r| {
            let n: usize = r.id.trim_start_matches("rec-").parse().unwrap_or(0);
            let mut b = r.clone();
            b.state = RecordState::ALL[n % RecordState::ALL.len()];
            b
        })
        .collect();
    let (dir, store) = store_with(&before, |tx, r| tx.put_record(None, r));
    store
        .transact(|tx| (before.iter().zip(docs)).try_for_each(|(b, r)| tx.put_record(Some(b), r)))
        .unwrap();
    (dir, store)
}

/// Every page of `q` over `docs` against the plain evaluation: the same
/// ids in the same order, and (returned) whether the total was exact.
fn pages_match_plain_evaluation<D: Doc + Clone>(
    docs: &[D],
    (_dir, store): (tempfile::TempDir, Store),
    q: &Query,
    size: u32,
) -> Result<bool, TestCaseError> {
    let want = expected(docs, q);
    let (got, total, exact) = all_pages::<D>(&store, q, size, || {});
    prop_assert_eq!(&got, &want);
    prop_assert_eq!(total as usize, want.len());
    Ok(exact)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn records_match_a_plain_evaluation(
        seeds in prop::collection::vec(any::<u64>(), 0..60),
        f in prop::option::of(filter(Kind::Records)),
        sort in sorts(Kind::Records),
        size in 1u32..8,
    ) {
        let docs: Vec<CredentialRecord> = seeds.iter().enumerate().map(|(i, s)| record(i, *s)).collect();
        let q = Query { filter: f, sort };
        prop_assert!(pages_match_plain_evaluation(&docs, moved_into_place(&docs), &q, size)?);
    }

    #[test]
    fn credentials_match_a_plain_evaluation(
        seeds in prop::collection::vec(any::<u64>(), 0..60),
        f in prop::option::of(filter(Kind::Credentials)),
        sort in sorts(Kind::Credentials),
        size in 1u32..8,
    ) {
        let docs: Vec<StoredCredential> = seeds.iter().enumerate().map(|(i, s)| credential(i, *s)).collect();
        let q = Query { filter: f, sort };
        pages_match_plain_evaluation(&docs, store_with(&docs, |tx, c| tx.put_credential(c)), &q, size)?;
    }

    #[test]
    fn templates_match_a_plain_evaluation(
        seeds in prop::collection::vec(any::<u64>(), 0..40),
        f in prop::option::of(filter(Kind::Templates)),
        sort in sorts(Kind::Templates),
        size in 1u32..8,
    ) {
        let docs: Vec<Template> = seeds.iter().enumerate().map(|(i, s)| template(i, *s)).collect();
        let q = Query { filter: f, sort };
        prop_assert!(pages_match_plain_evaluation(&docs, store_with(&docs, |tx, t| tx.put_template(t)), &q, size)?);
    }

    #[test]
    fn tokens_match_a_plain_evaluation(
        seeds in prop::collection::vec(any::<u64>(), 0..40),
        f in prop::option::of(filter(Kind::Tokens)),
        sort in sorts(Kind::Tokens),
        size in 1u32..8,
    ) {
        let docs: Vec<Token> = seeds.iter().enumerate().map(|(i, s)| token(i, *s)).collect();
        let q = Query { filter: f, sort };
        prop_assert!(pages_match_plain_evaluation(&docs, store_with(&docs, |tx, t| tx.put_token(t)), &q, size)?);
    }

    /// Records added and changed between pages: every record that matched
    /// from the start, and kept its place, comes exactly once, in order.
    #[test]
    fn pages_neither_skip_nor_repeat_while_records_change(
        seeds in prop::collection::vec(any::<u64>(), 1..50),
        later in prop::collection::vec(any::<u64>(), 1..30),
        f in prop::option::of(filter(Kind::Records)),
        descending in any::<bool>(),
        size in 1u32..6,
    ) {
        let docs: Vec<CredentialRecord> = seeds.iter().enumerate().map(|(i, s)| record(i, *s)).collect();
        let (_dir, store) = store_with(&docs, |tx, r| tx.put_record(None, r));
        let sort = vec![SortKey::new(Kind::Records, "created_at", descending).unwrap()];
        let q = Query { filter: f, sort };
        let want = expected(&docs, &q);
        let mut more = later.iter().enumerate();
        let (got, _, _) = all_pages::<CredentialRecord>(&store, &q, size, || {
            // One new record, and one old record touched in a way that
            // keeps its place (its version bumped).
            if let Some((i, s)) = more.next() {
                let new = record(1_000 + i, *s);
                store.transact(|tx| tx.put_record(None, &new)).unwrap();
                let old = &docs[i % docs.len()];
                let mut touched = old.clone();
                touched.version += 1;
                store.transact(|tx| tx.put_record(Some(old), &touched)).unwrap();
            }
        });
        let mut seen = std::collections::HashSet::new();
        prop_assert!(got.iter().all(|id| seen.insert(id.clone())), "an id came twice: {:?}", got);
        let originals: Vec<&String> = got.iter().filter(|id| want.contains(id)).collect();
        prop_assert_eq!(originals.len(), want.len());
        prop_assert!(originals.iter().zip(&want).all(|(a, b)| *a == b));
    }
}

/// A flow's index writes: a step to a state that shares the run keeps
/// every key and rewrites one value; a step to a state with a run of its
/// own moves one key.
#[test]
fn a_step_within_a_shared_run_moves_no_key() {
    let mut r = record(1, 0);
    r.role = crate::store::Role::Issuer;
    let mut at = |s: RecordState| {
        r.state = s;
        entries(&r)
    };
    let keys = |es: &[Entry]| es.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    let changed = |a: &[Entry], b: &[Entry]| a.iter().filter(|e| !b.contains(e)).count();
    let pending = at(RecordState::OfferPending);
    let sent = at(RecordState::OfferSent);
    assert_eq!(keys(&pending), keys(&sent));
    assert_eq!(changed(&pending, &sent), 1);
    let received = at(RecordState::RequestReceived);
    assert_ne!(keys(&sent), keys(&received));
    assert_eq!(changed(&sent, &received), 1);
    assert_eq!(changed(&received, &sent), 1);
    let making = at(RecordState::CredentialPending);
    assert_eq!(keys(&received), keys(&making));
    let done = at(RecordState::CredentialSent);
    assert_ne!(keys(&making), keys(&done));
    assert_eq!(changed(&making, &done), 1);
}

#[test]
fn like_and_fulltext_and_times() {
    assert!(text::like("Bach%", "Bachelor of Science"));
    assert!(text::like("B_ch%e", "Bache"));
    assert!(!text::like("B_ch%e", "Bachelor"));
    assert!(text::like("100\\%", "100%"));
    assert!(!text::like("100\\%", "1000"));
    assert!(text::like("%", ""));
    assert!(!text::like("a", "A"));
    assert!(text::fulltext("SMITH al", ["Alice Smith"].into_iter()));
    assert!(!text::fulltext("smith bob", ["Alice Smith"].into_iter()));
    assert_eq!(parse_time("1970-01-02"), Some(86_400_000));
    assert_eq!(parse_time("2000-03-01T00:00:00Z"), Some(951_868_800_000));
    assert_eq!(
        parse_time("2000-03-01T01:30:00.5+01:30"),
        Some(951_868_800_500)
    );
    assert_eq!(parse_time("2001-02-29"), None);
    assert_eq!(parse_time("2000-13-01"), None);
    assert_eq!(parse_time("yesterday"), None);
}

#[test]
fn bad_conditions_name_the_field() {
    let err = |f: &str, op, v| Cond::new(Kind::Records, f, op, v).unwrap_err().to_string();
    assert!(err("colour", Op::Eq, text("red")).contains("`colour`"));
    assert!(err("created_at", Op::Eq, text("yesterday")).contains("`created_at`"));
    assert!(err("state", Op::Like, text("Offer%")).contains("`state`"));
    assert!(err("state", Op::Eq, text("Pondering")).contains("`state`"));
    assert!(err("claims.age", Op::Gt, text("3")).contains("`claims.age`"));
    assert!(err("claims..age", Op::Eq, text("3")).contains("`claims..age`"));
    assert!(err("types", Op::In, list(&[])).contains("`types`"));
    assert!(Cond::new(Kind::Records, "status", Op::Eq, text("active")).is_err());
    let of = |kind, f: &str, v| Cond::new(kind, f, Op::Eq, v).unwrap_err().to_string();
    assert!(of(Kind::Templates, "claims.name", text("x")).contains("`claims.name`"));
    assert!(of(Kind::Templates, "status", text("revoked")).contains("`status`"));
    // A credential's status may keep its proto enum's prefix; a template's
    // or token's has no proto enum, so the prefix is not theirs.
    let status = |kind, v: &str| Cond::new(kind, "status", Op::Eq, text(v)).is_ok();
    assert!(status(Kind::Credentials, "CREDENTIAL_STATUS_REVOKED"));
    assert!(status(Kind::Tokens, "revoked"));
    assert!(!status(Kind::Tokens, "CREDENTIAL_STATUS_REVOKED"));
    assert!(!status(Kind::Templates, "CREDENTIAL_STATUS_ARCHIVED"));
    assert!(of(Kind::Tokens, "role", text("holderx")).contains("`role`"));
    assert!(of(Kind::Tokens, "state", text("Draft")).contains("wallet_id, role"));
    assert!(!of(Kind::Tokens, "state", text("Draft")).contains("claims"));
    let mut deep = Filter::Cond(Cond::new(Kind::Records, "role", Op::Eq, text("issuer")).unwrap());
    for _ in 0..MAX_DEPTH {
        deep = Filter::Not(Box::new(deep));
    }
    let q = Query {
        filter: Some(deep),
        sort: vec![],
    };
    assert!(q.check().unwrap_err().to_string().contains("nest"));
}
