//! The statuses of an outbound message to one customer (`sent`, `delivered`, `read`, ...).

use super::envelope;
use serde_json::{Value, json};

/// A `changes[].value` with one status of an outbound message.
pub fn status_value(status: &str, wamid: &str, recipient: &str, timestamp: i64) -> Value {
    let mut item =
        json!({ "id": wamid, "status": status, "timestamp": timestamp.to_string(), "recipient_id": recipient });
    if status == "failed" {
        item["errors"] = json!([{
            "code": 131049,
            "title": "This message was not delivered to maintain healthy ecosystem engagement.",
            "message": "This message was not delivered to maintain healthy ecosystem engagement.",
            "error_data": { "details": "In order to maintain a healthy ecosystem engagement, the message failed to be delivered." },
            "href": "/documentation/business-messaging/whatsapp/support/error-codes"
        }]);
        return json!({ "statuses": [item] }); // failed statuses carry no contacts[]
    }
    if status == "sent" {
        item["pricing"] = json!({ "billable": true, "pricing_model": "PMP", "type": "regular", "category": "service" });
    }
    json!({ "contacts": [{ "profile": { "name": "" }, "wa_id": recipient }], "statuses": [item] })
}

/// A status update (`sent`, `delivered`, `read`, `failed`, ...) for an outbound message.
pub fn status(phone_number_id: &str, wamid: &str, status: &str, recipient: &str, timestamp: i64) -> Value {
    envelope(phone_number_id, status_value(status, wamid, recipient, timestamp))
}
