//! Messages in a change: inbound messages (`value.messages[]`) and the business's own echoes
//! from the WhatsApp Business app (`value.message_echoes[]`).

use super::structured_replies::parse_structured_reply;
use super::{StructuredReply, str_at, unix_at};
use serde_json::Value;

/// An inbound message from `value.messages[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub wamid: String,
    /// `from`: the sender's WhatsApp id (digits); may be omitted for username users.
    pub from: Option<String>,
    /// `from_user_id`: the sender's BSUID.
    pub from_user_id: Option<String>,
    /// `group_id`: the group it was written in (Groups API); `None` for a 1:1 message.
    pub group_id: Option<String>,
    /// Unix seconds (Meta sends a string).
    pub timestamp: Option<i64>,
    /// `type`; unknown types are kept as they are.
    pub kind: String,
    /// What an agent reads first: text body, media caption, button or list reply title, order
    /// text, system notice, the new text of an edit, or the one-line summary of a structured
    /// reply.
    pub text: Option<String>,
    /// A Flow's answers, an address or a call permission (`interactive.nfm_reply`,
    /// `interactive.call_permission_reply`), read.
    pub structured_reply: Option<StructuredReply>,
    /// The message object exactly as received.
    pub raw: Value,
}

/// A message the business sent from the WhatsApp Business app (coexistence): the same shape as
/// an inbound message, with `from` the business and `to` the customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Echo {
    pub message: Message,
    /// `to`: the customer's WhatsApp id (digits).
    pub to: Option<String>,
}

/// A `value.messages[]` item (or a message of a history thread); `None` without a wamid.
pub(super) fn parse_message(m: &Value) -> Option<Message> {
    let wamid = str_at(m, &["id"])?;
    let kind = str_at(m, &["type"]).unwrap_or_else(|| "unknown".into());
    let structured_reply =
        if kind == "interactive" { m.get("interactive").and_then(parse_structured_reply) } else { None };
    let text = match kind.as_str() {
        "text" => str_at(m, &["text", "body"]),
        "image" | "video" | "document" => str_at(m, &[&kind, "caption"]),
        "button" => str_at(m, &["button", "text"]),
        "interactive" => str_at(m, &["interactive", "button_reply", "title"])
            .or_else(|| str_at(m, &["interactive", "list_reply", "title"]))
            .or_else(|| structured_reply.as_ref().map(|r| r.text.clone())),
        "order" => str_at(m, &["order", "text"]),
        "system" => str_at(m, &["system", "body"]),
        // The new version of an edited message: its text, or its caption.
        "edit" => str_at(m, &["edit", "message", "text", "body"]).or_else(|| {
            let inner = m.pointer("/edit/message")?;
            let kind = str_at(inner, &["type"])?;
            str_at(inner, &[&kind, "caption"])
        }),
        _ => None,
    };
    Some(Message {
        wamid,
        from: str_at(m, &["from"]),
        from_user_id: str_at(m, &["from_user_id"]),
        group_id: str_at(m, &["group_id"]),
        timestamp: unix_at(m, &["timestamp"]),
        kind,
        text,
        structured_reply,
        raw: m.clone(),
    })
}

/// A `value.message_echoes[]` item; `None` without a wamid.
pub(super) fn parse_echo(m: &Value) -> Option<Echo> {
    Some(Echo { message: parse_message(m)?, to: str_at(m, &["to"]) })
}
