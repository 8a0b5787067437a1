//! Pages of a query, per AIP-158: opaque tokens that hold the last item's
//! place in the sort order (so adding or changing documents neither skips
//! nor repeats one whose place did not change), and totals.

use std::cmp::Ordering;
use std::ops::Bound;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use super::docs::Doc;
use super::eval::{matches, status};
use super::fields::{Field, Name, Ty};
use super::plan::{Budget, Ctx, Cursor, Key, ms_range, plan};
use super::{Cond, Filter, Query, SortKey, Value, invalid};
use crate::error::{Error, Result};
use crate::store::Store;

/// Page sizes: 0 asks for the default; more than the maximum gets it.
pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;
/// What one page may read.
const PAGE_BUDGET: Budget = Budget {
    keys: 1_000_000,
    docs: 50_000,
};
/// What a first page and counting read together, and a later page's
/// count from the start: totals are exact when the matches run out within
/// it, else estimated (`total_exact` false), so that a total costs the
/// same in a wallet of a thousand records or of a million.
const COUNT_BUDGET: Budget = Budget {
    keys: 600,
    docs: 120,
};
/// What counting may read past a first page however much the page read:
/// matches that stop soon after it are still counted.
const COUNT_FLOOR: Budget = Budget { keys: 50, docs: 10 };

/// One page of results.
#[derive(Debug)]
pub struct Found<D> {
    pub items: Vec<D>,
    /// Empty on the last page.
    pub next_token: String,
    pub total_size: u64,
    pub total_exact: bool,
    /// What answering read: index keys and documents (for logs).
    pub keys_read: u64,
    pub docs_read: u64,
}

/// A page before its token is made: where the next one starts.
struct Part<D> {
    items: Vec<D>,
    next: Option<(Vec<SortVal>, Key)>,
    total_size: u64,
    total_exact: bool,
}

#[derive(Serialize, Deserialize)]
struct Token {
    /// Which query (and wallet) the token belongs to.
    q: String,
    /// The last item's doc key, and its sort values when sorted by others.
    k: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    s: Vec<SortVal>,
}

/// A sort value; a missing one sorts first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum SortVal {
    Null,
    Text(String),
    Num(f64),
}

impl SortVal {
    fn cmp(&self, o: &SortVal) -> Ordering {
        let rank = |v: &SortVal| match v {
            SortVal::Null => 0,
            SortVal::Text(_) => 1,
            SortVal::Num(_) => 2,
        };
        match (self, o) {
            (SortVal::Text(a), SortVal::Text(b)) => a.cmp(b),
            (SortVal::Num(a), SortVal::Num(b)) => a.total_cmp(b),
            _ => rank(self).cmp(&rank(o)),
        }
    }
}

fn sort_value<D: Doc>(d: &D, f: &Field, now_ms: i64) -> SortVal {
    match f {
        Field::Named(n) if n.ty() == Ty::Time => {
            d.time(*n).map_or(SortVal::Null, |t| SortVal::Num(t as f64))
        }
        Field::Named(n) => d
            .texts(*n)
            .first()
            .map_or(SortVal::Null, |t| SortVal::Text(t.to_string())),
        Field::Status => SortVal::Text(status(d, now_ms).into()),
        Field::Claim(path) => {
            let mut at = d.claims().get(&path[0]);
            for p in &path[1..] {
                at = at.and_then(|v| v.get(p));
            }
            match at {
                Some(Json::String(s)) => SortVal::Text(s.clone()),
                Some(Json::Number(n)) => n.as_f64().map_or(SortVal::Null, SortVal::Num),
                Some(Json::Bool(b)) => SortVal::Text(b.to_string()),
                _ => SortVal::Null,
            }
        }
    }
}

/// Compares (sort values, doc key) pairs under `sort`; ties by doc key.
fn compare(sort: &[SortKey], a: &(Vec<SortVal>, Key), b: &(Vec<SortVal>, Key)) -> Ordering {
    for (i, k) in sort.iter().enumerate() {
        let o = a.0[i].cmp(&b.0[i]);
        let o = if k.descending { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.1.cmp(&b.1)
}

/// A page of `q` in `wallet`: `page_size` 0 is 20, above 100 is 100;
/// `token` is the previous page's `next_token`. A query from a caller is
/// [`Query::check`]ed first.
pub fn run<D: Doc>(
    store: &Store,
    wallet: &str,
    q: &Query,
    page_size: u32,
    token: &str,
    now_ms: i64,
) -> Result<Found<D>> {
    run_within(store, wallet, q, page_size, token, now_ms, PAGE_BUDGET)
}

/// As [`run`], with what a page may read as `budget`.
pub(super) fn run_within<D: Doc>(
    store: &Store,
    wallet: &str,
    q: &Query,
    page_size: u32,
    token: &str,
    now_ms: i64,
    budget: Budget,
) -> Result<Found<D>> {
    let size = match page_size {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    } as usize;
    let fingerprint = {
        let h = Sha256::digest(format!("{:?}\0{wallet}\0{q:?}", D::KIND).as_bytes());
        h[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let after = if token.is_empty() {
        None
    } else {
        let t: Token = URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| invalid("page_token is not a token this call gave".into()))?;
        if t.q != fingerprint {
            return Err(invalid(
                "page_token belongs to another query: keep the filter and sort of the first page"
                    .into(),
            ));
        }
        let k = URL_SAFE_NO_PAD
            .decode(&t.k)
            .map_err(|_| invalid("page_token is not a token this call gave".into()))?;
        Some((t.s, k))
    };
    let streaming = match q.sort.as_slice() {
        [] => Some(false),
        [k] if k.field == Field::Named(Name::CreatedAt) => Some(k.descending),
        _ => None,
    };
    let ctx = |descending, budget| Ctx {
        store,
        wallet,
        now_ms,
        descending,
        budget,
        spent: Budget { keys: 0, docs: 0 },
        last: None,
    };
    let (part, read) = match streaming {
        Some(descending) => {
            let mut c = ctx(descending, budget);
            let start = after.map(|(_, k)| k);
            let (mut part, root, page) = stream(&mut c, q, size, start)?;
            if !page.first || part.next.is_some() {
                let seen = page.seen;
                (part.total_size, part.total_exact) =
                    total(&mut c, q, root, page, || ctx(descending, budget))?;
                // Counting can stop before its first match (its budget
                // spent planning); the page itself is a lower bound.
                part.total_size = part.total_size.max(seen);
            }
            (part, c.spent)
        }
        None => {
            let mut c = ctx(false, budget);
            (sorted(&mut c, q, size, after)?, c.spent)
        }
    };
    let next_token = part.next.map_or_else(String::new, |(s, k)| {
        let t = Token {
            q: fingerprint,
            k: URL_SAFE_NO_PAD.encode(k),
            s,
        };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&t).expect("serializes"))
    });
    Ok(Found {
        items: part.items,
        next_token,
        total_size: part.total_size,
        total_exact: part.total_exact,
        keys_read: read.keys,
        docs_read: read.docs,
    })
}

/// Sorted by creation: read the cursors from the token's place. Also
/// gives the cursor tree and what the page read, up to just past the last
/// match read (the page's, or the one after it that shows there is a next
/// page).
fn stream<D: Doc>(
    ctx: &mut Ctx<D>,
    q: &Query,
    size: usize,
    start: Option<Key>,
) -> Result<(Part<D>, Cursor, Page)> {
    let mut root = plan(ctx, q.filter.as_ref())?;
    let planned = ctx.spent;
    // Documents loaded to be shown, not to pass a condition: counting
    // will not load them.
    let mut shown = 0;
    let mut page_item = |ctx: &mut Ctx<D>, k: &Key| {
        let before = ctx.spent.docs;
        let found = checked(ctx, q, k);
        shown += ctx.spent.docs - before;
        found
    };
    let first = start.is_none();
    let mut from = start.map_or(Bound::Unbounded, Bound::Excluded);
    let mut items = Vec::with_capacity(size);
    let mut last = None;
    while items.len() < size {
        let Some(k) = root.seek(ctx, &from)? else {
            break;
        };
        from = Bound::Excluded(k.clone());
        if let Some(d) = page_item(ctx, &k)? {
            items.push(d);
            last = Some(k);
        }
    }
    let mut more = false;
    if items.len() == size {
        while let Some(k) = root.seek(ctx, &from)? {
            from = Bound::Excluded(k.clone());
            if page_item(ctx, &k)?.is_some() {
                more = true;
                break;
            }
        }
    }
    let page = Page {
        first,
        reached: from,
        seen: items.len() as u64 + u64::from(more),
        walked: Budget {
            keys: ctx.spent.keys - planned.keys,
            docs: ctx.spent.docs - planned.docs - shown,
        },
    };
    let part = Part {
        total_size: items.len() as u64,
        total_exact: true,
        next: last.filter(|_| more).map(|k| (Vec::new(), k)),
        items,
    };
    Ok((part, root, page))
}

/// The document at `k` if it (still) passes the filter: the index and
/// the document are read at slightly different moments.
fn checked<D: Doc>(ctx: &mut Ctx<D>, q: &Query, k: &Key) -> Result<Option<D>> {
    let now = ctx.now_ms;
    let d = match ctx.load(k) {
        Ok(_) => ctx.last.take().expect("loaded").1,
        // Gone since the index was read (a credential deleted).
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(q.filter
        .as_ref()
        .is_none_or(|f| matches(f, &d, now))
        .then_some(d))
}

/// What a page read: from the token's place (the start on a `first`
/// page) to just past its last match, `seen` matches; `walked` is what its
/// cursors read doing so (not planning, not loading what it shows).
struct Page {
    first: bool,
    reached: Bound<Key>,
    seen: u64,
    walked: Budget,
}

/// The total for `page`. A first page's count goes on from its last match
/// with what [`COUNT_BUDGET`] leaves after the page's own reading (at
/// least [`COUNT_FLOOR`]), so a page that read much (a sparse `and`) pays
/// little for its total; a later page counts from the start, planning
/// anew within the page's budget (`fresh`) as the first page did (a time
/// range's keys, bounded by the plan itself), then counting within
/// [`COUNT_BUDGET`].
fn total<'s, D: Doc>(
    c: &mut Ctx<'s, D>,
    q: &Query,
    root: Cursor,
    page: Page,
    fresh: impl FnOnce() -> Ctx<'s, D>,
) -> Result<(u64, bool)> {
    if page.first {
        // The page's matches are the first ones: counting goes on from the
        // last of them instead of reading them again.
        let left = |all: u64, read: u64, floor: u64| all.saturating_sub(read).max(floor);
        let budget = Budget {
            keys: left(COUNT_BUDGET.keys, page.walked.keys, COUNT_FLOOR.keys),
            docs: left(COUNT_BUDGET.docs, page.walked.docs, COUNT_FLOOR.docs),
        };
        c.budget = budget.after(c.spent);
        count(c, q, root, page.reached, page.seen)
    } else {
        let mut again = fresh();
        let root = plan(&mut again, q.filter.as_ref())?;
        again.budget = COUNT_BUDGET.after(again.spent);
        let counted = count(&mut again, q, root, Bound::Unbounded, 0);
        c.spent.keys += again.spent.keys;
        c.spent.docs += again.spent.docs;
        counted
    }
}

/// How many documents match, `n` of them already counted before `from`:
/// exact when the cursors run out within the context's budget, else
/// estimated from how far they got.
fn count<D: Doc>(
    ctx: &mut Ctx<D>,
    q: &Query,
    mut root: Cursor,
    mut from: Bound<Key>,
    mut n: u64,
) -> Result<(u64, bool)> {
    loop {
        match root.seek(ctx, &from) {
            Ok(Some(k)) => {
                n += 1;
                from = Bound::Excluded(k);
            }
            Ok(None) => return Ok((n, true)),
            Err(Error::ResourceExhausted(_)) => {
                let estimate = match (from, Span::of(ctx, q.filter.as_ref())?) {
                    (Bound::Excluded(at), Some(span)) => {
                        span.scale(n, span.covered(&at, ctx.descending))
                    }
                    _ => n,
                };
                return Ok((estimate, false));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The wallet's creation-time span, its first and last documents' times
/// (ms), within what the filter's own `created_at` conditions allow: what
/// totals past counting are scaled by, matches taken as spread evenly
/// over it.
#[derive(Clone, Copy)]
struct Span {
    first: u64,
    last: u64,
}

impl Span {
    fn of<D: Doc>(ctx: &Ctx<D>, f: Option<&Filter>) -> Result<Option<Span>> {
        let (Some(first), Some(last)) = (
            super::plan::edge::<D>(ctx, false)?,
            super::plan::edge::<D>(ctx, true)?,
        ) else {
            return Ok(None);
        };
        let (mut span, mut lo, mut hi) = (
            Span {
                first: time(&first),
                last: time(&last),
            },
            0u64,
            u64::MAX,
        );
        // Only conditions every match meets: the filter itself, or the
        // members of a top-level `and`.
        let all = match f {
            Some(Filter::And(each)) => each.iter().collect(),
            Some(g) => vec![g],
            None => vec![],
        };
        for g in all {
            if let Filter::Cond(Cond {
                field: Field::Named(Name::CreatedAt),
                op,
                value: Value::Time(t),
            }) = g
            {
                // Doc keys keep times before 1970 as 0.
                let ms = |t: i64| t.max(0) as u64;
                let (l, h) = ms_range(*op, *t);
                lo = lo.max(l.map_or(0, ms));
                hi = hi.min(h.map_or(u64::MAX, ms));
            }
        }
        span.first = span.first.max(lo);
        span.last = span.last.min(hi).max(span.first);
        Ok(Some(span))
    }

    /// Milliseconds in the span, at least 1.
    fn len(&self) -> u64 {
        self.last.saturating_sub(self.first) + 1
    }

    /// Milliseconds read from the span's edge the reading starts at to
    /// `end`, both included.
    fn covered(&self, end: &[u8], descending: bool) -> u64 {
        let edge = if descending { self.last } else { self.first };
        edge.abs_diff(time(end)) + 1
    }

    /// `n` matches found over `covered` ms, scaled to the span; never less
    /// than `n`.
    fn scale(&self, n: u64, covered: u64) -> u64 {
        let share = covered.max(1) as f64 / self.len() as f64;
        ((n as f64) / share.min(1.0)).round() as u64
    }
}

/// The creation time a doc key starts with.
fn time(k: &[u8]) -> u64 {
    u64::from_be_bytes(k.get(..8).and_then(|t| t.try_into().ok()).unwrap_or([0; 8]))
}

/// Sorted by other fields: every match is read and sorted (within the
/// page budget), then the page after the token's place is taken.
fn sorted<D: Doc>(
    ctx: &mut Ctx<D>,
    q: &Query,
    size: usize,
    after: Option<(Vec<SortVal>, Key)>,
) -> Result<Part<D>> {
    let mut root = plan(ctx, q.filter.as_ref())?;
    let mut from = Bound::Unbounded;
    let mut all = Vec::new();
    while let Some(k) = root.seek(ctx, &from)? {
        from = Bound::Excluded(k.clone());
        if let Some(d) = checked(ctx, q, &k)? {
            let vals = q
                .sort
                .iter()
                .map(|s| sort_value(&d, &s.field, ctx.now_ms))
                .collect();
            all.push((vals, k));
        }
    }
    all.sort_by(|a, b| compare(&q.sort, a, b));
    let start = match &after {
        Some(pos) => all.partition_point(|x| compare(&q.sort, x, pos) != Ordering::Greater),
        None => 0,
    };
    let page = &all[start.min(all.len())..(start + size).min(all.len())];
    let mut items = Vec::with_capacity(page.len());
    for (_, k) in page {
        ctx.last = None;
        if let Some(d) = checked(ctx, q, k)? {
            items.push(d);
        }
    }
    let more = start + size < all.len();
    Ok(Part {
        items,
        next: page.last().filter(|_| more).cloned(),
        total_size: all.len() as u64,
        total_exact: true,
    })
}
