//! Leaves: the cursor for one condition an index answers, from the
//! runs of its field (text values, times by the minute, records' role and
//! state, threads), and `status` rewritten into the times it stands for.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{Ctx, Cursor, Key, Node, one_or, prefix_end, scan, under};
use crate::error::Result;
use crate::search::docs::Doc;
use crate::search::eval::whole_second;
use crate::search::fields::{Field, Kind, Name, Ty};
use crate::search::index::{
    MINUTE, all_prefix, doc_key, minute, role_runs, state_run, text_prefix, time_bytes, time_prefix,
};
use crate::search::{Cond, Filter, Op, Value};
use crate::store::Role;

/// A condition an index answers: equality (and `$in`) on an indexed text,
/// enum or list field; a range on an indexed time.
pub(super) fn leaf<D: Doc>(ctx: &mut Ctx<D>, c: &Cond) -> Result<Option<Cursor>> {
    let kind: Kind = D::KIND;
    let Field::Named(n) = c.field else {
        return Ok(None);
    };
    let mut values: Vec<&str> = match (c.op, &c.value) {
        (Op::Eq | Op::Contains, Value::Text(v)) => vec![v],
        (Op::In, Value::List(vs)) => vs.iter().map(String::as_str).collect(),
        _ => vec![],
    };
    values.sort();
    values.dedup();
    if n == Name::Thid && !kind.indexed().contains(&n) && !values.is_empty() {
        return thread_list(ctx, &values);
    }
    if kind == Kind::Records && matches!(n, Name::State | Name::Role) {
        return Ok(state_runs(ctx.wallet, n, &values));
    }
    if n != Name::CreatedAt && !kind.indexed().contains(&n) {
        return Ok(None);
    }
    Ok(match (n.ty(), &c.value) {
        (Ty::Time, Value::Time(t)) if n == Name::CreatedAt => {
            let (lo, hi) = time_range(c.op, *t);
            Some(scan(all_prefix(kind, ctx.wallet), lo, hi, None))
        }
        (Ty::Time, Value::Time(t)) => {
            // Whole minutes from the index, then the exact condition.
            let (lo, hi) = minute_range(c.op, *t);
            time_cursor(ctx, n, lo, hi)?
                .map(|times| Cursor::new(Node::Check(Box::new(times), Filter::Cond(c.clone()))))
        }
        // An empty text is not in the index.
        _ if values.is_empty() || values.contains(&"") => None,
        _ => Some(one_or(
            values
                .iter()
                .map(|v| {
                    scan(
                        text_prefix(kind, ctx.wallet, n, v),
                        Bound::Unbounded,
                        Bound::Unbounded,
                        None,
                    )
                })
                .collect(),
            Node::Or,
        )),
    })
}

/// Records with one of `values` as their role or state, from the runs
/// role and state share (`index::state_run`): a role's every run, or a
/// state's run in each role, reading only its entries in an open run.
fn state_runs(wallet: &str, n: Name, values: &[&str]) -> Option<Cursor> {
    if values.is_empty() || values.contains(&"") {
        return None;
    }
    let mut runs: BTreeMap<Key, Option<Vec<Key>>> = BTreeMap::new();
    for v in values {
        if n == Name::Role {
            runs.extend(role_runs(wallet, v).into_iter().map(|r| (r, None)));
            continue;
        }
        for role in [Role::Issuer, Role::Holder] {
            let (run, value) = state_run(wallet, role.name(), v);
            match (runs.entry(run).or_insert(Some(Vec::new())), value) {
                (Some(vs), Some(v)) => vs.push(v),
                (all, _) => *all = None,
            }
        }
    }
    let runs = runs
        .into_iter()
        .map(|(run, values)| scan(run, Bound::Unbounded, Bound::Unbounded, values));
    Some(one_or(runs.collect(), Node::Or))
}

/// The documents of threads `thids` from the store's thread index (one
/// per thread), when the kind has one.
fn thread_list<D: Doc>(ctx: &mut Ctx<D>, thids: &[&str]) -> Result<Option<Cursor>> {
    let mut keys = Vec::new();
    for thid in thids {
        ctx.spend_doc()?;
        match D::by_thread(ctx.store, ctx.wallet, thid) {
            None => return Ok(None),
            Some(found) => keys.extend(found?.map(|d| doc_key(d.created_ms(), d.id()))),
        }
    }
    keys.sort();
    Ok(Some(Cursor::new(Node::List(keys))))
}

/// The minutes (as 8-byte prefixes) holding every time `op t` accepts.
fn minute_range(op: Op, t: i64) -> (Bound<Key>, Bound<Key>) {
    let at = |t: i64| time_bytes(t).to_vec();
    let first = Bound::Included(at(minute(t)));
    let past = Bound::Excluded(at(minute(t).saturating_add(MINUTE)));
    match op {
        Op::Eq => (first, past),
        Op::Gt | Op::Gte => (first, Bound::Unbounded),
        _ => (Bound::Unbounded, past),
    }
}

/// The times `op t` accepts, in ms, both ends included (None: open). A
/// time field takes only these five operators.
pub(in crate::search) fn ms_range(op: Op, t: i64) -> (Option<i64>, Option<i64>) {
    match op {
        Op::Eq => (Some(t), Some(t)),
        Op::Gt => (Some(t.saturating_add(1)), None),
        Op::Gte => (Some(t), None),
        Op::Lt => (None, Some(t.saturating_sub(1))),
        _ => (None, Some(t)),
    }
}

/// The bounds, as 8-byte time prefixes, of the times `op t` accepts.
fn time_range(op: Op, t: i64) -> (Bound<Key>, Bound<Key>) {
    let at = |t: i64| time_bytes(t).to_vec();
    let (lo, hi) = ms_range(op, t);
    (
        lo.map_or(Bound::Unbounded, |l| Bound::Included(at(l))),
        hi.map_or(Bound::Unbounded, |h| {
            Bound::Excluded(at(h.saturating_add(1)))
        }),
    )
}

/// A time range's doc keys are read and sorted into creation order up to
/// this many; a wider range merges the runs of its minutes instead.
const MAX_TIME_LIST: usize = 1_000;
/// The most minutes a time range merges. Each run costs a descent of the
/// tree to find and one to open, about what checking a page of documents
/// costs, so a range over more minutes is checked on the documents
/// instead, which streams (a page reads only what it shows).
const MAX_MINUTE_RUNS: usize = 32;

/// The documents whose time `n` is within `lo..hi`, in creation order:
/// up to [`MAX_TIME_LIST`] read and sorted, more merged from their
/// minutes' runs (each in creation order, as every time key ends with its
/// doc key); None past [`MAX_MINUTE_RUNS`] minutes.
fn time_cursor<D: Doc>(
    ctx: &mut Ctx<D>,
    n: Name,
    lo: Bound<Key>,
    hi: Bound<Key>,
) -> Result<Option<Cursor>> {
    let prefix = time_prefix(D::KIND, ctx.wallet, n);
    let range = under(&prefix, lo, hi);
    let minute_end = prefix.len() + 8;
    let mut keys = Vec::new();
    for k in ctx
        .store
        .index_range(range.0.clone(), range.1.clone(), false)
    {
        if keys.len() == MAX_TIME_LIST {
            return minute_runs(ctx, minute_end, keys, range);
        }
        ctx.spend(1)?;
        keys.push(k?.0.to_vec());
    }
    let mut docs: Vec<Key> = keys.iter().map(|k| k[minute_end..].to_vec()).collect();
    docs.sort();
    Ok(Some(Cursor::new(Node::List(docs))))
}

/// The runs of the minutes in `range` that hold keys, merged: those of
/// `keys` (the range's first, in key order), then each later one found
/// with a seek. None past [`MAX_MINUTE_RUNS`], or when the minutes seen so
/// far, spread over the range up to its last key, promise more.
fn minute_runs<D: Doc>(
    ctx: &mut Ctx<D>,
    minute_end: usize,
    keys: Vec<Key>,
    range: (Bound<Key>, Bound<Key>),
) -> Result<Option<Cursor>> {
    let minute = |k: &[u8]| k[..minute_end].to_vec();
    let mut minutes: Vec<Key> = keys.iter().map(|k| minute(k)).collect();
    minutes.dedup();
    ctx.spend(1)?;
    let last = match ctx.store.index_range(range.0, range.1.clone(), true).next() {
        Some(k) => minute(&k?.0),
        None => return Ok(None),
    };
    let slot = |m: &[u8]| {
        let ms = i64::from_be_bytes(m[minute_end - 8..].try_into().expect("8 bytes"));
        ms / MINUTE
    };
    let first = slot(&minutes[0]);
    let seen = slot(minutes.last().expect("keys were read")) - first + 1;
    let spread = (slot(&last) - first + 1).saturating_mul(minutes.len() as i64) / seen.max(1);
    if spread > MAX_MINUTE_RUNS as i64 {
        return Ok(None);
    }
    while minutes.last() != Some(&last) {
        if minutes.len() == MAX_MINUTE_RUNS {
            return Ok(None);
        }
        let Bound::Excluded(next) = prefix_end(minutes.last().expect("keys were read")) else {
            return Ok(None);
        };
        ctx.spend(1)?;
        let mut it = ctx
            .store
            .index_range(Bound::Included(next), range.1.clone(), false);
        match it.next().transpose()? {
            Some((k, _)) => minutes.push(minute(&k)),
            None => return Ok(None),
        }
    }
    let runs = minutes
        .into_iter()
        .map(|m| scan(m, Bound::Unbounded, Bound::Unbounded, None));
    Ok(Some(one_or(runs.collect(), Node::Or)))
}

/// `status` conditions as the index sees them: each status but active is
/// a time the document has (expired: an expiry reached), taken in
/// `eval::status`'s order, so a status excludes those before it; active
/// has none of the kind's.
pub(super) fn rewrite_status(kind: Kind, f: &Filter, now_ms: i64) -> Filter {
    let time = |name, op, t| {
        Filter::Cond(Cond {
            field: Field::Named(name),
            op,
            value: Value::Time(t),
        })
    };
    let order = [
        ("revoked", time(Name::RevokedAt, Op::Gte, 0)),
        ("archived", time(Name::ArchivedAt, Op::Gte, 0)),
        (
            "expired",
            time(Name::ExpiresAt, Op::Lte, whole_second(now_ms)),
        ),
    ];
    let one = |s: &str| {
        let mut all = Vec::new();
        for (name, c) in order.iter().filter(|(n, _)| kind.statuses().contains(n)) {
            if *name == s {
                all.push(c.clone());
                break;
            }
            all.push(Filter::Not(Box::new(c.clone())));
        }
        Filter::And(all)
    };
    let each = |fs: &[Filter]| fs.iter().map(|g| rewrite_status(kind, g, now_ms)).collect();
    match f {
        Filter::And(all) => Filter::And(each(all)),
        Filter::Or(any) => Filter::Or(each(any)),
        Filter::Not(g) => Filter::Not(Box::new(rewrite_status(kind, g, now_ms))),
        Filter::Cond(Cond {
            field: Field::Status,
            value,
            ..
        }) => match value {
            Value::List(vs) => Filter::Or(vs.iter().map(|v| one(v)).collect()),
            Value::Text(v) => one(v),
            _ => f.clone(),
        },
        Filter::Cond(_) => f.clone(),
    }
}
