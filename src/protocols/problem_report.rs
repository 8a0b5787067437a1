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

/// A problem report about `msg`, which its handler refused.
pub fn about(msg: &Message, why: &Error) -> Message {
    let code = match why {
        Error::Unsupported(_) => "e.p.msg.unsupported",
        Error::PermissionDenied(_) => "e.p.req.not-authorized",
        Error::FailedPrecondition(_) => "e.p.req.precondition",
        Error::NotFound { .. } => "e.p.msg.unknown-thread",
        _ => "e.p.msg",
    };
    let mut report = in_thread(msg.thread_id(), code, "{1} was refused: {2}");
    report.body["args"] = json!([msg.typ, why.to_string()]);
    report
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
            "e.p.req.precondition: https://example.org/x was refused: failed precondition: late"
        );
        assert_eq!(m.body["args"][0], "https://example.org/x");
    }
}
