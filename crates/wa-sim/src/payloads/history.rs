//! Coexistence onboarding: the chat history a business shares (or declines to), the content of
//! its media, and the contacts of its WhatsApp Business app.

use super::messages::{media_object, merge};
use super::{BUSINESS_NUMBER, Customer};
use serde_json::{Value, json};

/// One message of a history thread, as the business's WhatsApp Business app had it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryMessage {
    pub wamid: String,
    /// Sent by the business (`from` is its display number), else by the thread's customer.
    pub from_business: bool,
    /// `text`, or `media_placeholder`: a media message whose content Meta sends later, in a
    /// webhook of its own ([`history_media_value`]).
    pub kind: String,
    /// The text of a `text` message; unused for a placeholder.
    pub body: String,
    pub timestamp: i64,
    /// `history_context.status`: READ, DELIVERED, SENT, ERROR, PENDING or PLAYED.
    pub status: String,
}

/// A `changes[].value` (field `history`) with one chunk of the chat history a coexistence
/// business shares on onboarding: `phase` 0 to 2 (day 0-1, 1-90, 90-180), the chunk's order in
/// its phase, the sync's `progress` in percent, and one thread per customer `(wa_id, messages)`.
pub fn history_value(phase: i64, chunk_order: i64, progress: i64, threads: &[(String, Vec<HistoryMessage>)]) -> Value {
    let threads: Vec<Value> = threads
        .iter()
        .map(|(wa_id, messages)| {
            let messages: Vec<Value> = messages.iter().map(|m| history_message(wa_id, m)).collect();
            json!({ "id": wa_id, "messages": messages })
        })
        .collect();
    json!({ "history": [{
        "metadata": { "phase": phase, "chunk_order": chunk_order, "progress": progress },
        "threads": threads
    }] })
}

/// One message of a thread with customer `wa_id`. Only `text` has a content object: a
/// `media_placeholder` has none.
fn history_message(wa_id: &str, m: &HistoryMessage) -> Value {
    let from = if m.from_business { BUSINESS_NUMBER } else { wa_id };
    let mut message = json!({ "from": from, "id": m.wamid, "timestamp": m.timestamp.to_string(), "type": m.kind,
                              "history_context": { "status": m.status } });
    if m.kind == "text" {
        message["text"] = json!({ "body": m.body });
    }
    message
}

/// A `changes[].value` (field `history`) saying that the business turned history sharing off:
/// no history will come.
pub fn history_declined_value() -> Value {
    let title = "History sync is turned off by the business from the WhatsApp Business App";
    json!({ "history": [{ "errors": [{
        "code": 2593109, "title": title, "message": title,
        "error_data": { "details": "History sharing is turned off by the business" }
    }] }] })
}

/// A `changes[].value` with the content of a history `media_placeholder`: an ordinary
/// `messages[]` value holding one image `from` sent, which Meta sends under the field `history`
/// (use [`envelope_with_field`](super::envelope_with_field): its keys look like any inbound
/// message's). As in Meta's example it carries no `contacts[]`: the customer's name is not sent.
pub fn history_media_value(wamid: &str, from: &Customer, caption: &str, timestamp: i64) -> Value {
    json!({ "messages": [{
        "from": from.wa_id, "id": wamid, "timestamp": timestamp.to_string(), "type": "image",
        "image": merge(json!({ "caption": caption }), media_object("image/png"))
    }] })
}

/// A `changes[].value` (field `smb_app_state_sync`) with contacts of the business's WhatsApp
/// Business app, each `(wa_id, full name, "add" | "remove")`: how a coexistence integration
/// learns the names the business gave its customers.
pub fn state_sync_value(contacts: &[(&str, &str, &str)], timestamp: i64) -> Value {
    let items: Vec<Value> = contacts
        .iter()
        .map(|(wa_id, name, action)| {
            let first = name.split_whitespace().next().unwrap_or_default();
            json!({ "type": "contact",
                    "contact": { "full_name": name, "first_name": first, "phone_number": wa_id },
                    "action": action, "metadata": { "timestamp": timestamp.to_string() } })
        })
        .collect();
    json!({ "state_sync": items })
}
