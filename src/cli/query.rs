//! `--where` and `--sort`: the compact text form of a search, read into
//! the `Query` message the daemon takes.
//!
//! ```text
//! state=CredentialReceived and types~UniversityDegreeCredential
//!   and not (issuer=did:key:z6Mk… or created_at<2026-01-01)
//! claims.degree.name like "Bachelor%"   claims.age>=18   state in (OfferSent, RequestReceived)
//! claims match "alice smith"            --sort -created_at,claims.age
//! ```
//!
//! Operators: `=` `!=` `~` (contains) `>` `>=` `<` `<=` `like` `in` `match`
//! (full text). A value on a time field is a date or RFC 3339 time; a bare
//! value on a claim is a number or `true`/`false` when it reads as one
//! (a date after `<`/`>`), else text; quotes make it text.

use anyhow::{Context, bail};
use clap::Args;

use agentd::rpc::proto::{self, Operator, filter::Node, query_value::Kind as V};
use agentd::search::parse_time;

const TIME_FIELDS: [&str; 7] = [
    "created_at",
    "updated_at",
    "issued_at",
    "expires_at",
    "revoked_at",
    "received_at",
    "archived_at",
];

/// A search on a list: `--where` and `--sort`.
#[derive(Args, Default)]
pub struct Search {
    /// A filter, e.g. 'state=CredentialReceived and not issuer=did:key:…'
    /// (README.md, "Searching").
    #[arg(long = "where", value_name = "FILTER")]
    filter: Option<String>,
    /// Sort keys, comma-separated; `-` before one sorts it descending:
    /// `-created_at,claims.age`.
    #[arg(long, value_name = "KEYS", allow_hyphen_values = true)]
    sort: Option<String>,
}

impl Search {
    /// The query, or None when neither was given.
    pub fn query(&self) -> anyhow::Result<Option<proto::Query>> {
        let filter = match &self.filter {
            Some(text) => Some(parse(text).with_context(|| format!("--where {text:?}"))?),
            None => None,
        };
        let sort = self
            .sort
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| match k.strip_prefix('-') {
                Some(f) => proto::SortKey {
                    field: f.into(),
                    descending: true,
                },
                None => proto::SortKey {
                    field: k.trim_start_matches('+').into(),
                    descending: false,
                },
            })
            .collect::<Vec<_>>();
        Ok((filter.is_some() || !sort.is_empty()).then_some(proto::Query { filter, sort }))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Sym(&'static str),
}

fn tokens(s: &str) -> anyhow::Result<Vec<Tok>> {
    const SYMS: [&str; 10] = [">=", "<=", "!=", "=", "~", ">", "<", "(", ")", ","];
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start();
        let Some(c) = rest.chars().next() else {
            return Ok(out);
        };
        if let Some(sym) = SYMS.iter().find(|x| rest.starts_with(**x)) {
            out.push(Tok::Sym(sym));
            rest = &rest[sym.len()..];
        } else if c == '"' || c == '\'' {
            let mut text = String::new();
            let mut chars = rest[1..].char_indices();
            let end = loop {
                match chars.next() {
                    None => bail!("a quote is not closed"),
                    Some((i, q)) if q == c => break i + 2,
                    Some((_, '\\')) => text.extend(chars.next().map(|(_, x)| x)),
                    Some((_, x)) => text.push(x),
                }
            };
            out.push(Tok::Quoted(text));
            rest = &rest[end..];
        } else {
            let end = rest
                .find(|x: char| x.is_whitespace() || "=!~<>(),\"'".contains(x))
                .unwrap_or(rest.len());
            out.push(Tok::Word(rest[..end].into()));
            rest = &rest[end..];
        }
    }
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

fn parse(s: &str) -> anyhow::Result<proto::Filter> {
    let mut p = Parser {
        toks: tokens(s)?,
        at: 0,
    };
    let f = p.or()?;
    if let Some(t) = p.toks.get(p.at) {
        bail!("unexpected {t:?} after a complete filter");
    }
    Ok(f)
}

fn node(n: Node) -> proto::Filter {
    proto::Filter { node: Some(n) }
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn list(
        &mut self,
        word: &str,
        first: proto::Filter,
        more: fn(&mut Parser) -> anyhow::Result<proto::Filter>,
    ) -> anyhow::Result<proto::Filter> {
        let mut all = vec![first];
        while self.peek_word(word) {
            self.at += 1;
            all.push(more(self)?);
        }
        Ok(match all.len() {
            1 => all.pop().expect("one"),
            _ => {
                let fs = proto::Filters { filters: all };
                node(if word == "or" {
                    Node::Or(fs)
                } else {
                    Node::And(fs)
                })
            }
        })
    }

    fn or(&mut self) -> anyhow::Result<proto::Filter> {
        let first = self.and()?;
        self.list("or", first, Parser::and)
    }

    fn and(&mut self) -> anyhow::Result<proto::Filter> {
        let first = self.unary()?;
        self.list("and", first, Parser::unary)
    }

    fn unary(&mut self) -> anyhow::Result<proto::Filter> {
        if self.peek_word("not") {
            self.at += 1;
            return Ok(node(Node::Not(Box::new(self.unary()?))));
        }
        if self.toks.get(self.at) == Some(&Tok::Sym("(")) {
            self.at += 1;
            let f = self.or()?;
            if self.next() != Some(Tok::Sym(")")) {
                bail!("a `(` is not closed");
            }
            return Ok(f);
        }
        self.condition()
    }

    fn condition(&mut self) -> anyhow::Result<proto::Filter> {
        let field = match self.next() {
            Some(Tok::Word(w)) => w,
            t => bail!("expected a field name, found {t:?}"),
        };
        let (op, negate) = match self.next() {
            Some(Tok::Sym("=")) => (Operator::Eq, false),
            Some(Tok::Sym("!=")) => (Operator::Eq, true),
            Some(Tok::Sym("~")) => (Operator::Contains, false),
            Some(Tok::Sym(">")) => (Operator::Gt, false),
            Some(Tok::Sym(">=")) => (Operator::Gte, false),
            Some(Tok::Sym("<")) => (Operator::Lt, false),
            Some(Tok::Sym("<=")) => (Operator::Lte, false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("like") => (Operator::Like, false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("match") => (Operator::Fulltext, false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("in") => (Operator::In, false),
            t => bail!("expected an operator after `{field}`, found {t:?}"),
        };
        let value = if op == Operator::In {
            self.in_list()?
        } else {
            let t = self.next();
            value(&field, op, t)?
        };
        let c = node(Node::Condition(proto::Condition {
            field,
            op: op as i32,
            value: Some(proto::QueryValue { kind: Some(value) }),
        }));
        Ok(if negate {
            node(Node::Not(Box::new(c)))
        } else {
            c
        })
    }

    fn in_list(&mut self) -> anyhow::Result<V> {
        if self.next() != Some(Tok::Sym("(")) {
            bail!("`in` takes a list: in (a, b)");
        }
        let mut values = Vec::new();
        loop {
            match self.next() {
                Some(Tok::Word(w) | Tok::Quoted(w)) => values.push(w),
                t => bail!("expected a value in the list, found {t:?}"),
            }
            match self.next() {
                Some(Tok::Sym(",")) => continue,
                Some(Tok::Sym(")")) => return Ok(V::List(proto::StringList { values })),
                t => bail!("expected `,` or `)` in the list, found {t:?}"),
            }
        }
    }
}

/// The typed value of `field op token`.
fn value(field: &str, op: Operator, t: Option<Tok>) -> anyhow::Result<V> {
    let ordered = matches!(
        op,
        Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte
    );
    let time = |w: &str| {
        parse_time(w)
            .map(V::TimeMs)
            .with_context(|| format!("`{field}`: {w:?} is not a date or an RFC 3339 time"))
    };
    Ok(match t {
        Some(Tok::Quoted(q)) if TIME_FIELDS.contains(&field) => time(&q)?,
        Some(Tok::Quoted(q)) => V::Text(q),
        Some(Tok::Word(w)) if TIME_FIELDS.contains(&field) => time(&w)?,
        Some(Tok::Word(w)) if field.starts_with("claims.") => match w.parse::<f64>() {
            Ok(n) if n.is_finite() => V::Number(n),
            _ if ordered => time(&w)?,
            _ if w == "true" || w == "false" => V::Flag(w == "true"),
            _ => V::Text(w),
        },
        Some(Tok::Word(w)) => V::Text(w),
        t => bail!("expected a value after `{field}`, found {t:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(f: &proto::Filter) -> &proto::Condition {
        match &f.node {
            Some(Node::Condition(c)) => c,
            n => panic!("not a condition: {n:?}"),
        }
    }

    #[test]
    fn and_binds_tighter_than_or_and_not_tighter_than_and() {
        let f = parse("state=OfferSent or not role=holder and types~Degree").unwrap();
        let Some(Node::Or(or)) = &f.node else {
            panic!("{f:?}")
        };
        assert_eq!(cond(&or.filters[0]).field, "state");
        let Some(Node::And(and)) = &or.filters[1].node else {
            panic!("{f:?}")
        };
        assert!(matches!(and.filters[0].node, Some(Node::Not(_))));
        assert_eq!(cond(&and.filters[1]).op, Operator::Contains as i32);
    }

    #[test]
    fn values_are_typed_by_field_and_form() {
        let f = parse("created_at >= 2026-01-01").unwrap();
        assert_eq!(
            cond(&f).value.as_ref().unwrap().kind,
            Some(V::TimeMs(1_767_225_600_000))
        );
        let f = parse("claims.age>18").unwrap();
        assert_eq!(cond(&f).value.as_ref().unwrap().kind, Some(V::Number(18.0)));
        let f = parse("claims.age=\"18\"").unwrap();
        assert_eq!(
            cond(&f).value.as_ref().unwrap().kind,
            Some(V::Text("18".into()))
        );
        let f = parse("state in (OfferSent, 'Request Received')").unwrap();
        let Some(V::List(l)) = &cond(&f).value.as_ref().unwrap().kind else {
            panic!()
        };
        assert_eq!(l.values, ["OfferSent", "Request Received"]);
        let f = parse("issuer != did:key:z6Mk").unwrap();
        assert!(matches!(f.node, Some(Node::Not(_))));
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(parse("created_at > yesterday").is_err());
        assert!(parse("state =").is_err());
        assert!(parse("(state=A").is_err());
        assert!(parse("state=A role=B").is_err());
        assert!(parse("name = \"open").is_err());
    }
}
