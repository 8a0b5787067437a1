//! Report Problem 2.0.

use serde_json::{Value, json};

use crate::didcomm::Message;
use crate::error::Error;

pub const TYPE: &str = "https://didcomm.org/report-problem/2.0/problem-report";

/// A problem report in a new thread whose parent (`pthid`) is `thid`.
pub fn in_thread(thid: &str, code: &str, comment: &str) -> Message {
    let mut report = Message::new(TYPE, json!({ "code": code, "comment": comment }));
    report.pthid = Some(thid.to_string());
    report
}

/// A problem report about `msg`, which its handler refused. Its scope is
/// `m` (message): the refusal does not end the thread the message was in.
pub fn about(msg: &Message, why: &Error) -> Message {
    let code = match why {
        Error::Unsupported(_) => "e.m.msg.unsupported",
        Error::PermissionDenied(_) => "e.m.req.not-authorized",
        Error::FailedPrecondition(_) => "e.m.req.precondition",
        Error::NotFound { .. } => "e.m.msg.unknown-thread",
        Error::ResourceExhausted(_) => "e.m.me.res",
        _ => "e.m.msg",
    };
    let mut report = in_thread(msg.thread_id(), code, "{1} was refused: {2}");
    report.body["args"] = json!([msg.typ, why.to_string()]);
    report
}

/// Whether a report is an error (`e.…`) rather than a warning (`w.…`).
pub fn is_error(report: &Message) -> bool {
    code(report).split('.').next() == Some("e")
}

/// Whether a report ends its thread: an error (`e`) whose scope is not
/// `m` (one message refused); warnings never do.
pub fn ends_thread(report: &Message) -> bool {
    let mut parts = code(report).split('.');
    parts.next() == Some("e") && parts.next().is_some_and(|scope| scope != "m")
}

fn code(report: &Message) -> &str {
    report.body["code"].as_str().unwrap_or_default()
}

/// Longest description of a peer's report, in bytes.
const DESCRIBED: usize = 500;

/// A report's code and comment, with `{n}` placeholders filled from `args`
/// in one pass (a filled-in argument is never expanded again), at most
/// `DESCRIBED` bytes: the report comes from a peer.
pub fn describe(report: &Message) -> String {
    let code = crate::error::clip(report.body["code"].as_str().unwrap_or("e.p"), 64);
    let comment = report.body["comment"].as_str().unwrap_or_default();
    let args = report.body["args"].as_array();
    let mut out = format!("{code}: ");
    let mut rest = comment;
    while out.len() < DESCRIBED && !rest.is_empty() {
        let Some(open) = rest.find('{') else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let placeholder = after
            .find('}')
            .and_then(|close| Some((after[..close].parse::<usize>().ok()?, close)));
        match placeholder.and_then(|(n, close)| Some((args?.get(n.checked_sub(1)?)?, close))) {
            Some((arg, close)) => {
                match arg {
                    Value::String(s) => out.push_str(&crate::error::clip(s, DESCRIBED)),
                    other => out.push_str(&crate::error::clip(&other.to_string(), DESCRIBED)),
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    crate::error::clip(&out, DESCRIBED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_fills_placeholders() {
        let m = about(
            &Message::new("https://example.org/x", json!({})),
            &Error::FailedPrecondition("late".into()),
        );
        assert_eq!(
            describe(&m),
            "e.m.req.precondition: https://example.org/x was refused: failed precondition: late"
        );
        assert!(!ends_thread(&m));
        assert!(ends_thread(&in_thread("t", "e.p.req.rejected", "no")));
        assert!(!ends_thread(&in_thread("t", "w.p.x", "careful")));
        assert_eq!(m.body["args"][0], "https://example.org/x");
    }

    /// A comment of placeholders whose arguments are placeholders again
    /// expands once, and the result is bounded.
    #[test]
    fn describe_expands_once_and_is_bounded() {
        let mut m = in_thread("t", "e.p.x", &"{1}".repeat(1000));
        m.body["args"] = json!(["{1}{1}{1}{1}{1}{1}{1}{1}"]);
        let d = describe(&m);
        assert!(d.len() <= DESCRIBED + "…".len(), "{}", d.len());
        assert!(d.starts_with("e.p.x: {1}{1}"));
        let mut m = in_thread("t", "e.p.x", "{0} {2} {x} {1");
        m.body["args"] = json!(["a"]);
        assert_eq!(describe(&m), "e.p.x: {0} {2} {x} {1");
    }
}
