//! Queries from the control plane: proto filter trees checked into
//! `search` ones (an error names where in the tree), and pages run.

use tonic::Status;

use super::proto;
use super::status;
use crate::error::Error;
use crate::search::{self, Cond, Doc, Filter, Found, Kind, Op, SortKey, Value};
use crate::store::Store;

/// A condition the request's own fields add: `field = value`.
pub(super) fn eq(kind: Kind, field: &str, value: impl Into<String>) -> Result<Filter, Status> {
    Filter::eq(kind, field, value).map_err(status)
}

/// The request's query, checked; `and` adds conditions of its own fields.
pub(super) fn query(
    kind: Kind,
    q: Option<&proto::Query>,
    and: Vec<Filter>,
) -> Result<search::Query, Status> {
    let mut out = search::Query::default();
    if let Some(q) = q {
        if let Some(f) = &q.filter {
            out.filter = Some(filter(kind, f, "query.filter").map_err(status)?);
        }
        out.sort = q
            .sort
            .iter()
            .map(|s| SortKey::new(kind, &s.field, s.descending))
            .collect::<Result<_, _>>()
            .map_err(status)?;
    }
    // The caller's tree is bounded; the request's own fields add to it.
    out.check().map_err(status)?;
    Ok(and.into_iter().fold(out, search::Query::and))
}

fn at(place: &str, e: Error) -> Error {
    match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("{place}: {m}")),
        e => e,
    }
}

/// The tree as it came (its depth and size are `Query::check`'s to bound;
/// prost already stops decoding past 100 levels).
fn filter(kind: Kind, f: &proto::Filter, place: &str) -> Result<Filter, Error> {
    use proto::filter::Node;
    let many = |name: &str, fs: &proto::Filters| -> Result<Vec<Filter>, Error> {
        fs.filters
            .iter()
            .enumerate()
            .map(|(i, g)| filter(kind, g, &format!("{place}.{name}[{i}]")))
            .collect()
    };
    match &f.node {
        None => Err(Error::InvalidArgument(format!(
            "{place}: a filter is and, or, not or a condition"
        ))),
        Some(Node::And(fs)) => Ok(Filter::And(many("and", fs)?)),
        Some(Node::Or(fs)) => Ok(Filter::Or(many("or", fs)?)),
        Some(Node::Not(g)) => Ok(Filter::Not(Box::new(filter(
            kind,
            g,
            &format!("{place}.not"),
        )?))),
        Some(Node::Condition(c)) => condition(kind, c).map_err(|e| at(place, e)),
    }
}

fn condition(kind: Kind, c: &proto::Condition) -> Result<Filter, Error> {
    use proto::Operator as P;
    use proto::query_value::Kind as V;
    let field = &c.field;
    let op = match P::try_from(c.op) {
        Ok(P::Eq) => Op::Eq,
        Ok(P::In) => Op::In,
        Ok(P::Like) => Op::Like,
        Ok(P::Gt) => Op::Gt,
        Ok(P::Gte) => Op::Gte,
        Ok(P::Lt) => Op::Lt,
        Ok(P::Lte) => Op::Lte,
        Ok(P::Contains) => Op::Contains,
        Ok(P::Fulltext) => Op::Fulltext,
        Ok(P::Unspecified) | Err(_) => {
            return Err(Error::InvalidArgument(format!(
                "field `{field}`: op is missing or unknown ({})",
                c.op
            )));
        }
    };
    let value = match c.value.as_ref().and_then(|v| v.kind.as_ref()) {
        Some(V::Text(t)) => Value::Text(t.clone()),
        Some(V::TimeMs(t)) if *t >= 0 => Value::Time(*t),
        Some(V::TimeMs(_)) => {
            return Err(Error::InvalidArgument(format!(
                "field `{field}`: times start at 1970"
            )));
        }
        Some(V::Number(n)) if n.is_finite() => Value::Number(*n),
        Some(V::Number(_)) => {
            return Err(Error::InvalidArgument(format!(
                "field `{field}`: a number must be finite"
            )));
        }
        Some(V::Flag(b)) => Value::Bool(*b),
        Some(V::List(l)) => Value::List(l.values.clone()),
        None => {
            return Err(Error::InvalidArgument(format!(
                "field `{field}`: value is missing"
            )));
        }
    };
    Cond::new(kind, field, op, value).map(Filter::Cond)
}

/// Runs a page of `q` in `wallet` off the async runtime (a page may read
/// many index keys).
pub(super) async fn page<D: Doc + Send + 'static>(
    store: &Store,
    wallet: &str,
    q: search::Query,
    page: &Option<proto::PageRequest>,
) -> Result<Found<D>, Status> {
    let (size, token) = page
        .as_ref()
        .map(|p| (p.page_size, p.page_token.clone()))
        .unwrap_or_default();
    let (store, wallet) = (store.clone(), wallet.to_string());
    tokio::task::spawn_blocking(move || {
        search::run(&store, &wallet, &q, size, &token, crate::now_ms())
    })
    .await
    .map_err(|e| Status::internal(format!("search failed: {e}")))?
    .inspect(|f| {
        tracing::debug!(
            keys_read = f.keys_read,
            docs_read = f.docs_read,
            found = f.items.len(),
            "search page"
        )
    })
    .map_err(status)
}

pub(super) fn total<D>(f: &Found<D>) -> Option<proto::Total> {
    Some(proto::Total {
        size: f.total_size,
        exact: f.total_exact,
    })
}
