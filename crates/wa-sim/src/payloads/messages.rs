//! What one customer sends: an inbound message of each kind, and the other events of a chat
//! (the business's echo, a BSUID change, a call).

use super::{Customer, envelope};
use serde_json::{Value, json};

/// A `changes[].value` with one inbound message of `kind` from `from`.
pub fn message_value(kind: &str, wamid: &str, from: &Customer, text: &str, timestamp: i64) -> Option<Value> {
    let media = media_object;
    let (type_, object) = match kind {
        "text" => ("text", json!({ "body": text })),
        "image" => ("image", merge(media("image/png"), json!({ "caption": text }))),
        "video" => ("video", merge(media("video/mp4"), json!({ "caption": text }))),
        "audio" => ("audio", merge(media("audio/mpeg"), json!({ "voice": false }))),
        "voice" => ("audio", merge(media("audio/ogg; codecs=opus"), json!({ "voice": true }))),
        "document" => {
            ("document", merge(media("application/pdf"), json!({ "caption": text, "filename": "invoice.pdf" })))
        }
        "sticker" => ("sticker", merge(media("image/webp"), json!({ "animated": false }))),
        "location" => (
            "location",
            json!({ "latitude": 37.4851, "longitude": -122.1483, "name": "Meta HQ", "address": "1 Hacker Way, Menlo Park, CA" }),
        ),
        "contacts" => (
            "contacts",
            json!([{ "name": { "formatted_name": "John Smith", "first_name": "John", "last_name": "Smith" },
                     "phones": [{ "phone": "+1 (650) 555-1234", "wa_id": "16505551234", "type": "WORK" }] }]),
        ),
        "button_reply" => {
            ("interactive", json!({ "type": "button_reply", "button_reply": { "id": "yes", "title": text } }))
        }
        "list_reply" => (
            "interactive",
            json!({ "type": "list_reply", "list_reply": { "id": "row-1", "title": text, "description": "First row" } }),
        ),
        "button" => ("button", json!({ "payload": "CONFIRM", "text": text })),
        // A Flow's answers: Meta sends them as a JSON *string*, with the business's flow_token.
        "flow_reply" => (
            "interactive",
            json!({ "type": "nfm_reply", "nfm_reply": { "name": "flow", "body": "Sent", "response_json": json!({
                "flow_token": "sim-flow-token", "date": "2026-12-24", "guests": "2", "notes": text }).to_string() } }),
        ),
        "address_reply" => (
            "interactive",
            json!({ "type": "nfm_reply", "nfm_reply": { "name": "address_message", "response_json": json!({
                "saved_address_id": "address1", "values": { "name": from.name, "address": text, "city": "Mumbai",
                                                            "in_pin_code": "400063" } }).to_string() } }),
        ),
        "call_permission_reply" => (
            "interactive",
            json!({ "type": "call_permission_reply", "call_permission_reply": {
                "response": "accept", "is_permanent": false, "expiration_timestamp": timestamp + 7 * 86400,
                "response_source": "user_action" } }),
        ),
        "reaction" => (
            "reaction",
            json!({ "message_id": "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA=", "emoji": "👍" }),
        ),
        "order" => (
            "order",
            json!({ "catalog_id": "1234567890", "text": text,
                    "product_items": [{ "product_retailer_id": "SKU-1", "quantity": 2, "item_price": 9.99, "currency": "USD" }] }),
        ),
        "system" => {
            let message = json!({ "from": from.wa_id, "id": wamid, "timestamp": timestamp.to_string(), "type": "system",
                "system": { "body": format!("User {} changed from {} to 15550009999", from.name, from.wa_id),
                            "wa_id": "15550009999", "type": "user_changed_number" } });
            return Some(json!({ "messages": [message] })); // no contacts[] on system messages
        }
        "unsupported" => {
            let message = json!({ "from": from.wa_id, "id": wamid, "timestamp": timestamp.to_string(), "type": "unsupported",
                "errors": [{ "code": 131051, "title": "Message type unknown", "message": "Message type unknown",
                             "error_data": { "details": "Message type is currently not supported." } }],
                "unsupported": { "type": "poll_creation" } });
            return Some(json!({ "contacts": [contact(from)], "messages": [message] }));
        }
        _ => return None,
    };
    let mut message = json!({ "from": from.wa_id, "id": wamid, "timestamp": timestamp.to_string(), "type": type_ });
    message[type_] = object;
    if matches!(
        kind,
        "button_reply" | "list_reply" | "button" | "flow_reply" | "address_reply" | "call_permission_reply"
    ) {
        message["context"] =
            json!({ "from": "15550783881", "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA" });
    }
    Some(json!({ "contacts": [contact(from)], "messages": [message] }))
}

/// The media part of an inbound media message: what a client downloads it by (the demo media
/// every `wa-sim graph` serves, see [`crate::demo_media`]).
pub(super) fn media_object(mime: &str) -> Value {
    let sha256 = crate::graph::sha256_base64(&crate::demo_media::bytes(mime));
    json!({ "mime_type": mime, "sha256": sha256, "id": crate::demo_media::id(mime) })
}

fn contact(from: &Customer) -> Value {
    json!({ "profile": { "name": from.name }, "wa_id": from.wa_id })
}

pub(super) fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// An inbound text message from `from` (digits, no '+') with profile name `name`.
pub fn text_message(phone_number_id: &str, wamid: &str, from: &str, name: &str, body: &str, timestamp: i64) -> Value {
    let customer = Customer { wa_id: from.to_string(), name: name.to_string() };
    envelope(phone_number_id, message_value("text", wamid, &customer, body, timestamp).expect("text is a known kind"))
}

/// A `changes[].value` with a text the business sent to `to` from the WhatsApp Business app on
/// a coexistence number (`smb_message_echoes`).
pub fn echo_value(wamid: &str, to: &str, body: &str, timestamp: i64) -> Value {
    json!({ "message_echoes": [{
        "from": "15550783881", "to": to, "id": wamid, "timestamp": timestamp.to_string(),
        "type": "text", "text": { "body": body }
    }] })
}

/// The same as a whole webhook.
pub fn echo(phone_number_id: &str, wamid: &str, to: &str, body: &str, timestamp: i64) -> Value {
    envelope(phone_number_id, echo_value(wamid, to, body, timestamp))
}

/// A `changes[].value` with one event of a call from the customer `from` (`connect`, or
/// `terminate` with Meta's `status`; answered calls carry their start and duration).
pub fn call_value(
    call_id: &str,
    from: &str,
    event: &str,
    status: Option<&str>,
    answered_for: Option<i64>,
    timestamp: i64,
) -> Value {
    let mut call = json!({
        "id": call_id, "from": from, "to": "15550783881", "event": event,
        "direction": "USER_INITIATED", "timestamp": timestamp.to_string()
    });
    if event == "terminate" {
        call["status"] = json!(status.unwrap_or("COMPLETED"));
        call["end_time"] = json!(timestamp.to_string());
        if let Some(seconds) = answered_for {
            call["start_time"] = json!((timestamp - seconds).to_string());
            call["duration"] = json!(seconds);
        }
    }
    json!({ "contacts": [{ "profile": { "name": "" }, "wa_id": from }], "calls": [call] })
}

/// A `changes[].value` saying that the customer `wa_id`'s BSUID went from `previous` to `current`.
pub fn user_id_update_value(wa_id: &str, previous: &str, current: &str, timestamp: i64) -> Value {
    json!({ "user_id_update": [{
        "wa_id": wa_id,
        "user_id": { "previous": previous, "current": current },
        "timestamp": timestamp.to_string()
    }] })
}

/// A `changes[].value` of field `user_preferences`: the customer stopped (`stop`) or resumed
/// (`resume`) marketing messages, as Meta's reference example has it (the timestamp a number).
/// `user_id` names them by BSUID instead of by phone number.
pub fn user_preferences_value(from: &Customer, user_id: Option<&str>, value: &str, timestamp: i64) -> Value {
    let detail = format!("User requested to {value} marketing messages");
    let (contact, mut item) = match user_id {
        Some(id) => (json!({ "profile": { "name": from.name }, "user_id": id }), json!({ "user_id": id })),
        None => (contact(from), json!({ "wa_id": from.wa_id })),
    };
    item["detail"] = json!(detail);
    item["category"] = json!("marketing_messages");
    item["value"] = json!(value);
    item["timestamp"] = json!(timestamp);
    json!({ "contacts": [contact], "user_preferences": [item] })
}

/// A `changes[].value` with a `user_preference_changed` system message: the same change,
/// announced in the chat (Meta documents no example of it; `system.marketing` carries the word).
pub fn preference_system_value(wamid: &str, from: &Customer, value: &str, timestamp: i64) -> Value {
    let body = match value {
        "resume" => format!("{} resumed marketing messages", from.name),
        _ => format!("{} stopped marketing messages", from.name),
    };
    json!({ "messages": [{ "from": from.wa_id, "id": wamid, "timestamp": timestamp.to_string(), "type": "system",
        "system": { "body": body, "type": "user_preference_changed", "marketing": value } }] })
}
