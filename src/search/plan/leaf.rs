//! Leaves: the cursor for one condition an index answers, from the
//! runs of its field (text values, times by the minute, records' role and
//! state, threads), and `status` rewritten into the times it stands for.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{Ctx, Cursor, Key, Node, one_or, prefix_end, scan};
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
            time_list(ctx, n, lo, hi)?.map(|keys| {
                let list = Cursor::new(Node::List(keys));
                Cursor::new(Node::Check(Box::new(list), Filter::Cond(c.clone())))
            })
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
/// this many; a wider range is checked on the documents instead, which
/// streams (a page reads only what it shows).
const MAX_TIME_LIST: usize = 1_000;

/// The doc keys whose time `n` is within `lo..hi`, in creation order, or
/// None past [`MAX_TIME_LIST`].
fn time_list<D: Doc>(
    ctx: &mut Ctx<D>,
    n: Name,
    lo: Bound<Key>,
    hi: Bound<Key>,
) -> Result<Option<Vec<Key>>> {
    let prefix = time_prefix(D::KIND, ctx.wallet, n);
    let lift = |b: Bound<Key>, open: Bound<Key>| match b {
        Bound::Unbounded => open,
        Bound::Included(k) => Bound::Included([prefix.as_slice(), &k].concat()),
        Bound::Excluded(k) => Bound::Excluded([prefix.as_slice(), &k].concat()),
    };
    let lo = lift(lo, Bound::Included(prefix.clone()));
    let hi = lift(hi, prefix_end(&prefix));
    let mut keys = Vec::new();
    for k in ctx.store.index_range(lo, hi, false) {
        if keys.len() == MAX_TIME_LIST {
            return Ok(None);
        }
        ctx.spend(1)?;
        keys.push(k?.0[prefix.len() + 8..].to_vec());
    }
    keys.sort();
    Ok(Some(keys))
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
