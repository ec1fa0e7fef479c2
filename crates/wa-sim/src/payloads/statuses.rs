//! The statuses of an outbound message to one customer (`sent`, `delivered`, `read`, ...).

use super::envelope;
use serde_json::{Value, json};

/// A `changes[].value` with one status of an outbound message.
pub fn status_value(status: &str, wamid: &str, recipient: &str, timestamp: i64) -> Value {
    let mut item =
        json!({ "id": wamid, "status": status, "timestamp": timestamp.to_string(), "recipient_id": recipient });
    if status == "failed" {
        return failed_status_value(wamid, recipient, 131049, timestamp);
    }
    if status == "sent" {
        item["pricing"] = json!({ "billable": true, "pricing_model": "PMP", "type": "regular", "category": "service" });
    }
    json!({ "contacts": [{ "profile": { "name": "" }, "wa_id": recipient }], "statuses": [item] })
}

/// A `changes[].value` with a `failed` status of an outbound message, with Meta's error `code`:
/// 131049 (Meta's per-customer marketing limit) or 131050 (the customer stopped marketing
/// messages); any other code gets a generic title.
pub fn failed_status_value(wamid: &str, recipient: &str, code: i64, timestamp: i64) -> Value {
    let (title, details) = match code {
        131049 => (
            "This message was not delivered to maintain healthy ecosystem engagement.",
            "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
        ),
        131050 => (
            "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business.",
            "The user has stopped receiving marketing messages from this business.",
        ),
        _ => ("Message failed to send.", "Message failed to send."),
    };
    let item = json!({
        "id": wamid, "status": "failed", "timestamp": timestamp.to_string(), "recipient_id": recipient,
        "errors": [{ "code": code, "title": title, "message": title, "error_data": { "details": details },
                     "href": "/documentation/business-messaging/whatsapp/support/error-codes" }]
    });
    json!({ "statuses": [item] }) // failed statuses carry no contacts[]
}

/// A status update (`sent`, `delivered`, `read`, `failed`, ...) for an outbound message.
pub fn status(phone_number_id: &str, wamid: &str, status: &str, recipient: &str, timestamp: i64) -> Value {
    envelope(phone_number_id, status_value(status, wamid, recipient, timestamp))
}
