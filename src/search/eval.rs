//! A filter evaluated on one document: what the indexes cannot answer, and
//! the definition the index plans must agree with.

use serde_json::Value as Json;

use super::docs::Searchable;
use super::fields::{Field, Name};
use super::text::{fulltext, like, parse_time};
use super::{Cond, Filter, Op, Value};

/// Whether `d` passes `f`; `now_ms` decides which credentials have expired.
pub fn matches<D: Searchable>(f: &Filter, d: &D, now_ms: i64) -> bool {
    match f {
        Filter::And(all) => all.iter().all(|g| matches(g, d, now_ms)),
        Filter::Or(any) => any.iter().any(|g| matches(g, d, now_ms)),
        Filter::Not(g) => !matches(g, d, now_ms),
        Filter::Cond(c) => cond(c, d, now_ms),
    }
}

/// A document's status: a credential's as `verify::held::status_of` has
/// it (revoked first, then expired once `exp`, in whole seconds, is
/// reached), a template's (archived) and a token's (revoked) alike.
pub(super) fn status<D: Searchable>(d: &D, now_ms: i64) -> &'static str {
    if d.time(Name::RevokedAt).is_some() {
        "revoked"
    } else if d.time(Name::ArchivedAt).is_some() {
        "archived"
    } else if d
        .time(Name::ExpiresAt)
        .is_some_and(|exp| exp <= whole_second(now_ms))
    {
        "expired"
    } else {
        "active"
    }
}

pub(super) fn whole_second(ms: i64) -> i64 {
    ms - ms.rem_euclid(1000)
}

fn cond<D: Searchable>(c: &Cond, d: &D, now_ms: i64) -> bool {
    match &c.field {
        Field::Status => texts_match(c.op, &c.value, &[status(d, now_ms)]),
        Field::Named(n) => match d.time(*n) {
            Some(t) => time_match(c.op, &c.value, t),
            None => texts_match(c.op, &c.value, &d.texts(*n)),
        },
        Field::Claim(path) => {
            let mut at: Option<&Json> = None;
            for (i, p) in path.iter().enumerate() {
                at = if i == 0 {
                    d.claims().get(p)
                } else {
                    at.and_then(|v| v.get(p))
                };
            }
            match (at, path.is_empty()) {
                (_, true) => {
                    let mut texts = Vec::new();
                    d.claims().values().for_each(|v| strings(v, &mut texts));
                    claim_text_match(c, &texts)
                }
                (Some(v), false) => claim(c, v),
                (None, false) => false,
            }
        }
    }
}

fn texts_match(op: Op, v: &Value, texts: &[&str]) -> bool {
    match (op, v) {
        (Op::Eq | Op::Contains, Value::Text(x)) => texts.iter().any(|t| t == x),
        (Op::In, Value::List(xs)) => texts.iter().any(|t| xs.iter().any(|x| x == t)),
        (Op::Like, Value::Text(p)) => texts.iter().any(|t| like(p, t)),
        (Op::Fulltext, Value::Text(q)) => !texts.is_empty() && fulltext(q, texts.iter().copied()),
        _ => false,
    }
}

fn time_match(op: Op, v: &Value, t: i64) -> bool {
    let Value::Time(x) = v else { return false };
    compare(op, t.cmp(x))
}

fn compare(op: Op, o: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => o == Equal,
        Op::Gt => o == Greater,
        Op::Gte => o != Less,
        Op::Lt => o == Less,
        Op::Lte => o != Greater,
        _ => false,
    }
}

/// Every string under `v`, for `$fulltext`.
fn strings<'a>(v: &'a Json, out: &mut Vec<&'a str>) {
    match v {
        Json::String(s) => out.push(s),
        Json::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Json::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

fn claim_text_match(c: &Cond, texts: &[&str]) -> bool {
    match (c.op, &c.value) {
        (Op::Fulltext, Value::Text(q)) => !texts.is_empty() && fulltext(q, texts.iter().copied()),
        _ => false,
    }
}

/// A condition on one claim's JSON value, typed by the condition's value:
/// text against a JSON string, a number against a JSON number, a time
/// against a string that is an RFC 3339 time or date.
fn claim(c: &Cond, v: &Json) -> bool {
    match (c.op, &c.value) {
        (Op::Fulltext, _) => {
            let mut texts = Vec::new();
            strings(v, &mut texts);
            claim_text_match(c, &texts)
        }
        (Op::Contains, x) => v
            .as_array()
            .is_some_and(|a| a.iter().any(|e| scalar_eq(e, x))),
        (Op::Eq, x) => scalar_eq(v, x),
        (Op::In, Value::List(xs)) => v.as_str().is_some_and(|s| xs.iter().any(|x| x == s)),
        (Op::Like, Value::Text(p)) => v.as_str().is_some_and(|s| like(p, s)),
        (op, Value::Number(x)) => v.as_f64().is_some_and(|n| compare(op, n.total_cmp(x))),
        (op, Value::Time(x)) => v
            .as_str()
            .and_then(parse_time)
            .is_some_and(|t| compare(op, t.cmp(x))),
        _ => false,
    }
}

fn scalar_eq(v: &Json, x: &Value) -> bool {
    match x {
        Value::Text(t) => v.as_str() == Some(t),
        Value::Number(n) => v.as_f64() == Some(*n),
        Value::Bool(b) => v.as_bool() == Some(*b),
        Value::Time(t) => v.as_str().and_then(parse_time) == Some(*t),
        Value::List(_) => false,
    }
}
