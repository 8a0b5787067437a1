//! Report Problem 2.0.

use serde_json::json;

use crate::didcomm::Message;
use crate::error::Error;

pub const TYPE: &str = "https://didcomm.org/report-problem/2.0/problem-report";

/// A problem report about `msg`, in a new thread whose parent is `msg`'s thread.
pub fn about(msg: &Message, why: &Error) -> Message {
    let code = match why {
        Error::Unsupported(_) => "e.p.msg.unsupported",
        Error::PermissionDenied(_) => "e.p.req.not-authorized",
        Error::FailedPrecondition(_) => "e.p.req.precondition",
        _ => "e.p.msg",
    };
    let mut report = Message::new(
        TYPE,
        json!({
            "code": code,
            "comment": "{1}",
            "args": [msg.typ, why.to_string()],
        }),
    );
    report.pthid = Some(msg.thread_id().to_string());
    report
}
