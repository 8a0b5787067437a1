//! The DIDComm v2.1 plaintext message, our own type so the rest of the
//! agent does not depend on the DIDComm library's.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    #[serde(rename = "type")]
    pub typ: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pthid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_time: Option<u64>,
    #[serde(default)]
    pub body: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A DIDComm attachment: `{id, media_type, format, data{json|base64|links}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    pub data: Map<String, Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    /// A new message of `typ` with a fresh id and `created_time` now.
    pub fn new(typ: &str, body: Value) -> Self {
        Message {
            id: uuid::Uuid::new_v4().to_string(),
            typ: typ.to_string(),
            from: None,
            to: vec![],
            thid: None,
            pthid: None,
            created_time: Some(crate::now_secs()),
            expires_time: None,
            body,
            attachments: vec![],
            extra: Map::new(),
        }
    }

    /// A reply in this message's thread, from its recipient to its sender.
    pub fn reply(&self, typ: &str, body: Value) -> Self {
        let mut m = Message::new(typ, body);
        m.thid = Some(self.thread_id().to_string());
        m.pthid = self.pthid.clone();
        m
    }

    /// The thread id: `thid`, or the id of a message that starts a thread.
    pub fn thread_id(&self) -> &str {
        self.thid.as_deref().unwrap_or(&self.id)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("messages serialize")
    }
}
