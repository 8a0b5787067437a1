//! A filter as a tree of cursors over the indexes. Every cursor yields doc
//! keys in one direction of creation order, so `and` is a leapfrog join,
//! `or` a merge and `not` a difference, each reading only the keys it
//! needs; what no index answers is checked on the loaded document.

use std::cmp::Ordering;
use std::ops::Bound;

use super::Filter;
use super::docs::Doc;
use super::eval::matches;
use super::index::{all_prefix, doc_id};
use crate::error::{Error, Result};
use crate::store::{IndexEntries, Store};

mod leaf;

pub(super) use leaf::ms_range;
use leaf::{leaf, rewrite_status};

pub(super) type Key = Vec<u8>;

/// What a query may read: index keys and documents loaded, each bounded;
/// past either bound it stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Budget {
    pub keys: u64,
    pub docs: u64,
}

impl Budget {
    /// This budget on top of what `spent` has used already.
    pub(super) fn after(self, spent: Budget) -> Budget {
        Budget {
            keys: spent.keys + self.keys,
            docs: spent.docs + self.docs,
        }
    }
}

/// One query's reading state.
pub(super) struct Ctx<'s, D> {
    pub store: &'s Store,
    pub wallet: &'s str,
    pub now_ms: i64,
    pub descending: bool,
    pub budget: Budget,
    pub spent: Budget,
    /// The document last loaded, kept for the page that wants it next.
    pub last: Option<(Key, D)>,
}

impl<'s, D: Doc> Ctx<'s, D> {
    fn exhausted(&self) -> Error {
        Error::ResourceExhausted(format!(
            "the query reads more than {} index keys or {} records; add a condition on an indexed field",
            self.budget.keys, self.budget.docs
        ))
    }

    fn spend(&mut self, keys: u64) -> Result<()> {
        self.spent.keys += keys;
        if self.spent.keys > self.budget.keys {
            return Err(self.exhausted());
        }
        Ok(())
    }

    fn spend_doc(&mut self) -> Result<()> {
        self.spent.docs += 1;
        if self.spent.docs > self.budget.docs {
            return Err(self.exhausted());
        }
        Ok(())
    }

    /// The document at `k`, loaded (or kept from the last load).
    pub(super) fn load(&mut self, k: &Key) -> Result<&D> {
        if self.last.as_ref().is_none_or(|(l, _)| l != k) {
            self.spend_doc()?;
            let d = D::load(self.store, self.wallet, &doc_id(k))?;
            self.last = Some((k.clone(), d));
        }
        Ok(&self.last.as_ref().expect("just loaded").1)
    }

    /// `a` against `b` in the query's direction.
    fn order(&self, a: &[u8], b: &[u8]) -> Ordering {
        if self.descending { b.cmp(a) } else { a.cmp(b) }
    }

    /// Whether `k` is at or past `from` in the query's direction.
    fn reached(&self, k: &[u8], from: &Bound<Key>) -> bool {
        match from {
            Bound::Unbounded => true,
            Bound::Included(f) => self.order(k, f) != Ordering::Less,
            Bound::Excluded(f) => self.order(k, f) == Ordering::Greater,
        }
    }
}

/// A cursor: its node and the last key it gave, which answers any later
/// seek it still satisfies (seeks only move forward).
pub(super) struct Cursor {
    node: Node,
    cur: Option<Key>,
    done: bool,
}

enum Node {
    /// Keys `prefix · doc` with doc within `lo..hi` (ascending terms),
    /// and when `values` is set, an entry value among them.
    Scan {
        prefix: Vec<u8>,
        lo: Bound<Key>,
        hi: Bound<Key>,
        values: Option<Vec<Vec<u8>>>,
        iter: Option<IndexEntries>,
    },
    /// Doc keys read from a time index, sorted ascending.
    List(Vec<Key>),
    And(Vec<Cursor>),
    Or(Vec<Cursor>),
    Minus(Box<Cursor>, Box<Cursor>),
    /// Keys of the inner cursor whose documents pass the filter.
    Check(Box<Cursor>, Filter),
}

impl Cursor {
    fn new(node: Node) -> Cursor {
        Cursor {
            node,
            cur: None,
            done: false,
        }
    }

    /// The first key at or past `from`, in the query's direction.
    pub(super) fn seek<D: Doc>(
        &mut self,
        ctx: &mut Ctx<D>,
        from: &Bound<Key>,
    ) -> Result<Option<Key>> {
        if let Some(c) = &self.cur
            && ctx.reached(c, from)
        {
            return Ok(Some(c.clone()));
        }
        if self.done {
            return Ok(None);
        }
        let found = self.node.seek(ctx, from)?;
        self.done = found.is_none();
        self.cur = found.clone();
        Ok(found)
    }
}

impl Node {
    fn seek<D: Doc>(&mut self, ctx: &mut Ctx<D>, from: &Bound<Key>) -> Result<Option<Key>> {
        match self {
            Node::Scan {
                prefix,
                lo,
                hi,
                values,
                iter,
            } => {
                let mut next = None;
                // Step a few keys on the open iterator before seeking anew:
                // joins mostly ask for something close.
                for _ in 0..16 {
                    let Some(it) = iter.as_mut() else { break };
                    ctx.spend(1)?;
                    match it.next().transpose()? {
                        None => return Ok(None),
                        Some(e) if ctx.reached(&e.0[prefix.len()..], from) => {
                            next = Some(e);
                            break;
                        }
                        Some(_) => {}
                    }
                }
                if next.is_none() {
                    let (mut lo, mut hi) = (lo.clone(), hi.clone());
                    if ctx.descending {
                        hi = tighter(hi, from.clone(), Ordering::Less);
                    } else {
                        lo = tighter(lo, from.clone(), Ordering::Greater);
                    }
                    let (lo, hi) = under(prefix, lo, hi);
                    let mut it = ctx.store.index_range(lo, hi, ctx.descending);
                    ctx.spend(1)?;
                    next = it.next().transpose()?;
                    *iter = Some(it);
                }
                // A run a state shares with those passed through next to
                // it: step on to an entry of one asked for.
                while let Some((k, v)) = next {
                    if values.as_ref().is_none_or(|vs| vs.iter().any(|w| v == *w)) {
                        return Ok(Some(k[prefix.len()..].to_vec()));
                    }
                    ctx.spend(1)?;
                    next = match iter.as_mut() {
                        Some(it) => it.next().transpose()?,
                        None => None,
                    };
                }
                Ok(None)
            }
            Node::List(keys) => {
                ctx.spend(1)?;
                // Ascending, the keys not yet reached come first; descending,
                // the keys reached do (all at or below `from`).
                Ok(if ctx.descending {
                    let i = keys.partition_point(|k| ctx.reached(k, from));
                    i.checked_sub(1).map(|i| keys[i].clone())
                } else {
                    let i = keys.partition_point(|k| !ctx.reached(k, from));
                    keys.get(i).cloned()
                })
            }
            Node::And(all) => {
                // Each cursor is asked for the key the one before gave (or
                // later); the first that gives a later key restarts the
                // round from it, so the target only moves forward.
                let mut target = from.clone();
                'join: loop {
                    let mut agreed: Option<Key> = None;
                    for c in all.iter_mut() {
                        let Some(k) = c.seek(ctx, &target)? else {
                            return Ok(None);
                        };
                        let later = agreed.as_ref().is_some_and(|a| *a != k);
                        target = Bound::Included(k.clone());
                        if later {
                            continue 'join;
                        }
                        agreed = Some(k);
                    }
                    return Ok(agreed);
                }
            }
            Node::Or(any) => {
                let mut best: Option<Key> = None;
                for c in any.iter_mut() {
                    if let Some(k) = c.seek(ctx, from)?
                        && best
                            .as_ref()
                            .is_none_or(|b| ctx.order(&k, b) == Ordering::Less)
                    {
                        best = Some(k);
                    }
                }
                Ok(best)
            }
            Node::Minus(keep, drop) => {
                let mut from = from.clone();
                loop {
                    let Some(k) = keep.seek(ctx, &from)? else {
                        return Ok(None);
                    };
                    if drop.seek(ctx, &Bound::Included(k.clone()))? != Some(k.clone()) {
                        return Ok(Some(k));
                    }
                    from = Bound::Excluded(k);
                }
            }
            Node::Check(inner, f) => {
                let mut from = from.clone();
                loop {
                    let Some(k) = inner.seek(ctx, &from)? else {
                        return Ok(None);
                    };
                    let now = ctx.now_ms;
                    if matches(f, ctx.load(&k)?, now) {
                        return Ok(Some(k));
                    }
                    from = Bound::Excluded(k);
                }
            }
        }
    }
}

/// Of two bounds on one side, the one that lets fewer keys through:
/// `wins` is how the tighter key compares (Greater for a lower bound).
fn tighter(a: Bound<Key>, b: Bound<Key>, wins: Ordering) -> Bound<Key> {
    let key = |x: &Bound<Key>| match x {
        Bound::Included(k) | Bound::Excluded(k) => Some(k.clone()),
        Bound::Unbounded => None,
    };
    match (key(&a), key(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some(x), Some(y)) => match x.cmp(&y) {
            Ordering::Equal if matches!(b, Bound::Excluded(_)) => b,
            Ordering::Equal => a,
            o if o == wins => a,
            _ => b,
        },
    }
}

/// Bounds on what follows `prefix` as bounds on whole keys, within the
/// keys starting with `prefix`.
fn under(prefix: &[u8], lo: Bound<Key>, hi: Bound<Key>) -> (Bound<Key>, Bound<Key>) {
    let lift = |b: Bound<Key>, open: Bound<Key>| match b {
        Bound::Unbounded => open,
        Bound::Included(k) => Bound::Included([prefix, &k].concat()),
        Bound::Excluded(k) => Bound::Excluded([prefix, &k].concat()),
    };
    (
        lift(lo, Bound::Included(prefix.to_vec())),
        lift(hi, prefix_end(prefix)),
    )
}

/// The bound just past every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Bound<Key> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bound::Excluded(end);
        }
    }
    Bound::Unbounded
}

/// The cursor tree for `f` (every document when None).
pub(super) fn plan<D: Doc>(ctx: &mut Ctx<D>, f: Option<&Filter>) -> Result<Cursor> {
    let f = f.map(|f| rewrite_status(D::KIND, f, ctx.now_ms));
    Ok(match &f {
        None => all(ctx),
        Some(f) => match node(ctx, f)? {
            Some(c) => c,
            None => Cursor::new(Node::Check(Box::new(all(ctx)), f.clone())),
        },
    })
}

fn all<D: Doc>(ctx: &Ctx<D>) -> Cursor {
    scan(
        all_prefix(D::KIND, ctx.wallet),
        Bound::Unbounded,
        Bound::Unbounded,
        None,
    )
}

/// The keys under `prefix` within `lo..hi`, and with one of `values` when
/// they are set.
fn scan(prefix: Vec<u8>, lo: Bound<Key>, hi: Bound<Key>, values: Option<Vec<Key>>) -> Cursor {
    Cursor::new(Node::Scan {
        prefix,
        lo,
        hi,
        values,
        iter: None,
    })
}

/// The cursor serving `f` from indexes, or None when `f` needs every
/// document read (its parent decides how).
fn node<D: Doc>(ctx: &mut Ctx<D>, f: &Filter) -> Result<Option<Cursor>> {
    Ok(match f {
        Filter::Cond(c) => leaf(ctx, c)?,
        Filter::Or(any) => {
            let mut nodes = Vec::new();
            for g in any {
                match node(ctx, g)? {
                    Some(n) => nodes.push(n),
                    None => return Ok(None),
                }
            }
            Some(one_or(nodes, Node::Or))
        }
        Filter::Not(g) => {
            node(ctx, g)?.map(|n| Cursor::new(Node::Minus(Box::new(all(ctx)), Box::new(n))))
        }
        Filter::And(each) => {
            let (mut pos, mut neg, mut rest) = (Vec::new(), Vec::new(), Vec::new());
            for g in each {
                match g {
                    Filter::Not(inner) => match node(ctx, inner)? {
                        Some(n) => neg.push(n),
                        None => rest.push(g.clone()),
                    },
                    _ => match node(ctx, g)? {
                        Some(n) => pos.push(n),
                        None => rest.push(g.clone()),
                    },
                }
            }
            if pos.is_empty() && neg.is_empty() {
                return Ok(None);
            }
            let mut c = if pos.is_empty() {
                all(ctx)
            } else {
                one_or(pos, Node::And)
            };
            if !neg.is_empty() {
                c = Cursor::new(Node::Minus(Box::new(c), Box::new(one_or(neg, Node::Or))));
            }
            if !rest.is_empty() {
                c = Cursor::new(Node::Check(Box::new(c), Filter::And(rest)));
            }
            Some(c)
        }
    })
}

fn one_or(mut nodes: Vec<Cursor>, many: fn(Vec<Cursor>) -> Node) -> Cursor {
    if nodes.len() == 1 {
        nodes.pop().expect("one")
    } else {
        Cursor::new(many(nodes))
    }
}

/// The wallet's first (or, `last`, newest) doc key, if it has any.
pub(super) fn edge<D: Doc>(ctx: &Ctx<D>, last: bool) -> Result<Option<Key>> {
    let prefix = all_prefix(D::KIND, ctx.wallet);
    let mut it = ctx
        .store
        .index_range(Bound::Included(prefix.clone()), prefix_end(&prefix), last);
    Ok(it
        .next()
        .transpose()?
        .map(|(k, _)| k[prefix.len()..].to_vec()))
}
