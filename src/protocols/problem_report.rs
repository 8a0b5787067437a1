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

/// A report's code and comment, with `{n}` placeholders filled from `args`.
pub fn describe(report: &Message) -> String {
    let code = report.body["code"].as_str().unwrap_or("e.p");
    let mut comment = report.body["comment"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Some(args) = report.body["args"].as_array() {
        for (i, a) in args.iter().enumerate() {
            let text = match a {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            comment = comment.replace(&format!("{{{}}}", i + 1), &text);
        }
    }
    let comment: String = comment.chars().take(500).collect();
    format!("{code}: {comment}")
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
}
