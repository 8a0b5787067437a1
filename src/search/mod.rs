//! Searching records, held credentials, templates and tokens: one query model (a filter tree
//! of `and`/`or`/`not` over typed conditions, sort keys, AIP-158 pages with
//! totals) served from secondary indexes the store keeps in the same
//! transaction as each write.
//!
//! [`Cond::new`] checks a condition against the fields of a [`Kind`]
//! (`fields.rs`; `docs.rs` reads them from each stored kind); [`run`]
//! plans a query over the indexes (`plan.rs`), evaluates what they cannot
//! answer on the documents (`eval.rs`) and pages (`page.rs`). `index.rs`
//! says which index keys a document has.

mod docs;
mod eval;
mod fields;
mod index;
mod page;
mod plan;
#[cfg(test)]
mod tests;
mod text;

pub use docs::{Doc, Searchable};
pub use eval::matches;
pub use fields::{ACROSS_WALLETS, Field, Kind};
pub use index::{Entry, entries, index_version, kind_prefix};
pub use page::{Found, run};
pub use text::parse_time;

use crate::error::{Error, Result};

/// How deep `and`/`or`/`not` may nest, and how many conditions a filter
/// may have: a filter costs work per node, and comes from a caller.
pub const MAX_DEPTH: usize = 8;
pub const MAX_CONDITIONS: usize = 64;
/// Values in one `$in`; bytes in one text value; sort keys in one query.
pub const MAX_IN: usize = 100;
pub const MAX_TEXT: usize = 1024;
pub const MAX_SORT_KEYS: usize = 3;

/// An operator, typed by the field it applies to (see [`Cond::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    In,
    /// SQL LIKE, case-sensitive: `%` any run of characters, `_` one, `\`
    /// escapes either.
    Like,
    Gt,
    Gte,
    Lt,
    Lte,
    /// A list holds the value (types; a JSON array claim).
    Contains,
    /// Every word of the value occurs, case-insensitively, in the field's
    /// text (all string values under it, for a claim).
    Fulltext,
}

/// A condition's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    /// Milliseconds since the Unix epoch.
    Time(i64),
    Number(f64),
    Bool(bool),
    /// For `$in`.
    List(Vec<String>),
}

/// A leaf: `field op value`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub field: Field,
    pub op: Op,
    pub value: Value,
}

/// A filter tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Cond(Cond),
}

impl Filter {
    /// The checked condition `field = value` on `kind`.
    pub fn eq(kind: Kind, field: &str, value: impl Into<String>) -> Result<Filter> {
        Cond::new(kind, field, Op::Eq, Value::Text(value.into())).map(Filter::Cond)
    }
}

/// One sort key; ties fall to creation time, then id.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub field: Field,
    pub descending: bool,
}

/// What to find in one wallet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    pub filter: Option<Filter>,
    pub sort: Vec<SortKey>,
}

impl Query {
    /// Adds `f` to the filter with AND.
    pub fn and(mut self, f: Filter) -> Query {
        self.filter = Some(match self.filter.take() {
            None => f,
            Some(Filter::And(mut all)) => {
                all.push(f);
                Filter::And(all)
            }
            Some(g) => Filter::And(vec![g, f]),
        });
        self
    }

    /// Whether a condition of the filter is on `field`.
    pub fn mentions(&self, field: &Field) -> bool {
        fn on(f: &Filter, field: &Field) -> bool {
            match f {
                Filter::And(all) | Filter::Or(all) => all.iter().any(|g| on(g, field)),
                Filter::Not(g) => on(g, field),
                Filter::Cond(c) => c.field == *field,
            }
        }
        self.filter.as_ref().is_some_and(|f| on(f, field))
    }

    /// Checks the tree's shape: depth, size, and no empty `and`/`or`.
    pub fn check(&self) -> Result<()> {
        if self.sort.len() > MAX_SORT_KEYS {
            return Err(invalid(format!(
                "sort: at most {MAX_SORT_KEYS} keys, not {}",
                self.sort.len()
            )));
        }
        let mut conditions = 0;
        if let Some(f) = &self.filter {
            shape(f, "query.filter", 1, &mut conditions)?;
        }
        Ok(())
    }
}

fn shape(f: &Filter, at: &str, depth: usize, conditions: &mut usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(invalid(format!(
            "{at}: filters nest at most {MAX_DEPTH} deep"
        )));
    }
    match f {
        Filter::And(all) | Filter::Or(all) => {
            let name = if matches!(f, Filter::And(_)) {
                "and"
            } else {
                "or"
            };
            if all.is_empty() {
                return Err(invalid(format!("{at}.{name}: needs at least one filter")));
            }
            for (i, g) in all.iter().enumerate() {
                shape(g, &format!("{at}.{name}[{i}]"), depth + 1, conditions)?;
            }
        }
        Filter::Not(g) => shape(g, &format!("{at}.not"), depth + 1, conditions)?,
        Filter::Cond(_) => {
            *conditions += 1;
            if *conditions > MAX_CONDITIONS {
                return Err(invalid(format!(
                    "{at}: a filter has at most {MAX_CONDITIONS} conditions"
                )));
            }
        }
    }
    Ok(())
}

pub(crate) fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}
