//! Webhook POST bodies as Meta sends them (shapes from Meta's webhook reference examples).

use serde_json::{Value, json};

/// The envelope around one `changes[].value` for a business number.
pub fn envelope(phone_number_id: &str, value: Value) -> Value {
    let mut value = value;
    value["messaging_product"] = json!("whatsapp");
    value["metadata"] =
        json!({ "display_phone_number": "15550783881", "phone_number_id": phone_number_id });
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "value": value, "field": "messages" }] }]
    })
}

/// An inbound text message from `from` (digits, no '+') with profile name `name`.
pub fn text_message(
    phone_number_id: &str,
    wamid: &str,
    from: &str,
    name: &str,
    body: &str,
    timestamp: i64,
) -> Value {
    envelope(
        phone_number_id,
        json!({
            "contacts": [{ "profile": { "name": name }, "wa_id": from }],
            "messages": [{
                "from": from, "id": wamid, "timestamp": timestamp.to_string(),
                "type": "text", "text": { "body": body }
            }]
        }),
    )
}

/// A status update (`sent`, `delivered`, `read`, `failed`, ...) for an outbound message.
pub fn status(
    phone_number_id: &str,
    wamid: &str,
    status: &str,
    recipient: &str,
    timestamp: i64,
) -> Value {
    let mut item = json!({
        "id": wamid, "status": status, "timestamp": timestamp.to_string(), "recipient_id": recipient
    });
    if status == "failed" {
        item["errors"] = json!([{
            "code": 131049,
            "title": "This message was not delivered to maintain healthy ecosystem engagement.",
            "message": "This message was not delivered to maintain healthy ecosystem engagement.",
            "error_data": { "details": "In order to maintain a healthy ecosystem engagement, the message failed to be delivered." }
        }]);
    }
    envelope(phone_number_id, json!({ "statuses": [item] }))
}
