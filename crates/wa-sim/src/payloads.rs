//! Webhook POST bodies as Meta sends them. Shapes follow Meta's webhook reference examples
//! (`../shared/reference/whatsapp-cloud-api.md` §1): ids and timestamps are strings, numbers
//! are numbers, `contacts[]` is absent for `system` messages and `failed` statuses.

use serde_json::{Value, json};

/// Every inbound kind `wa-sim trigger` can send.
pub const MESSAGE_KINDS: &[&str] = &[
    "text",
    "image",
    "audio",
    "voice",
    "video",
    "document",
    "sticker",
    "location",
    "contacts",
    "button_reply",
    "list_reply",
    "button",
    "reaction",
    "order",
    "system",
    "unsupported",
];

/// Every status kind `wa-sim trigger` can send.
pub const STATUS_KINDS: &[&str] = &["sent", "delivered", "read", "played", "failed"];

/// Other webhooks `wa-sim trigger` sends: a message the business sent from the WhatsApp
/// Business app (`smb_message_echoes`), a customer's new BSUID (`user_id_update`), and a
/// customer's call that rings and ends unanswered (`missed_call`, field `calls`).
pub const OTHER_KINDS: &[&str] = &["echo", "user_id_update", "missed_call"];

/// The customer a message comes from.
#[derive(Debug, Clone)]
pub struct Customer {
    /// WhatsApp id: digits, no '+'.
    pub wa_id: String,
    pub name: String,
}

/// One `entry[]` holding one `changes[]` item for a business number.
pub fn envelope(phone_number_id: &str, value: Value) -> Value {
    batch(phone_number_id, vec![value])
}

/// The `changes[].field` Meta sends a value under.
fn field_of(value: &Value) -> &'static str {
    if value.get("message_echoes").is_some() {
        "smb_message_echoes"
    } else if value.get("user_id_update").is_some() {
        "user_id_update"
    } else if value.get("calls").is_some() {
        "calls"
    } else {
        "messages"
    }
}

/// Several updates in one POST, as Meta batches them: one entry, one change per update.
pub fn batch(phone_number_id: &str, values: Vec<Value>) -> Value {
    let changes: Vec<Value> = values
        .into_iter()
        .map(|v| {
            let field = field_of(&v);
            json!({ "value": with_metadata(phone_number_id, v), "field": field })
        })
        .collect();
    json!({ "object": "whatsapp_business_account", "entry": [{ "id": "102290129340398", "changes": changes }] })
}

/// Several `changes[].value`s folded into one, as Meta does when it batches: the items of
/// `messages[]` and `statuses[]` in order, and `contacts[]` with each sender once (the first
/// entry for a `wa_id` wins). Fold messages and statuses separately: a status's contact entry
/// has an empty profile name, which must not stand for a message's sender.
pub fn merge_values(values: Vec<Value>) -> Value {
    let (mut contacts, mut messages, mut statuses) = (Vec::<Value>::new(), Vec::new(), Vec::new());
    for mut value in values {
        let mut take = |key: &str| match value.get_mut(key).map(Value::take) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        for contact in take("contacts") {
            if !contacts.iter().any(|c| c["wa_id"] == contact["wa_id"]) {
                contacts.push(contact);
            }
        }
        messages.extend(take("messages"));
        statuses.extend(take("statuses"));
    }
    let mut merged = json!({});
    for (key, items) in [("contacts", contacts), ("messages", messages), ("statuses", statuses)] {
        if !items.is_empty() {
            merged[key] = Value::Array(items);
        }
    }
    merged
}

fn with_metadata(phone_number_id: &str, mut value: Value) -> Value {
    value["messaging_product"] = json!("whatsapp");
    value["metadata"] = json!({ "display_phone_number": "15550783881", "phone_number_id": phone_number_id });
    value
}

/// A `changes[].value` with one inbound message of `kind` from `from`.
pub fn message_value(kind: &str, wamid: &str, from: &Customer, text: &str, timestamp: i64) -> Option<Value> {
    let media = |mime: &str| json!({ "mime_type": mime, "sha256": "SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI=", "id": "1003383421387256" });
    let (type_, object) = match kind {
        "text" => ("text", json!({ "body": text })),
        "image" => ("image", merge(media("image/jpeg"), json!({ "caption": text }))),
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
    if matches!(kind, "button_reply" | "list_reply" | "button") {
        message["context"] =
            json!({ "from": "15550783881", "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA" });
    }
    Some(json!({ "contacts": [contact(from)], "messages": [message] }))
}

fn contact(from: &Customer) -> Value {
    json!({ "profile": { "name": from.name }, "wa_id": from.wa_id })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

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

/// A status update (`sent`, `delivered`, `read`, `failed`, ...) for an outbound message.
pub fn status(phone_number_id: &str, wamid: &str, status: &str, recipient: &str, timestamp: i64) -> Value {
    envelope(phone_number_id, status_value(status, wamid, recipient, timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_cloud::webhook;

    #[test]
    fn every_kind_parses_with_the_extensions_parser() {
        let from = Customer { wa_id: "16505551234".into(), name: "Sheena".into() };
        for kind in MESSAGE_KINDS {
            let body =
                envelope("1", message_value(kind, &format!("wamid.{kind}"), &from, "hello", 1749416383).unwrap());
            let parsed = webhook::parse(body.to_string().as_bytes()).unwrap();
            let change = &parsed.changes[0];
            assert_eq!(change.messages.len(), 1, "{kind}");
            assert_eq!(change.messages[0].wamid, format!("wamid.{kind}"));
            assert!(change.rejected.is_empty(), "{kind}");
        }
        for s in STATUS_KINDS {
            let parsed = webhook::parse(status("1", "wamid.x", s, "16505551234", 1).to_string().as_bytes()).unwrap();
            assert_eq!(parsed.changes[0].statuses[0].status, *s);
        }
    }

    #[test]
    fn echoes_and_user_id_updates_parse_with_the_extensions_parser() {
        let body = batch(
            "1",
            vec![echo_value("wamid.e", "16505551234", "hi", 1), user_id_update_value("1", "US.A", "US.B", 1)],
        );
        let parsed = webhook::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!((parsed.changes[0].field.as_str(), parsed.changes[0].echoes.len()), ("smb_message_echoes", 1));
        assert_eq!(parsed.changes[1].field, "user_id_update");
        assert_eq!(parsed.changes[1].user_id_updates[0].current, "US.B");
        let call = batch("1", vec![call_value("wacid.1", "16505551234", "terminate", Some("FAILED"), None, 5)]);
        let parsed = webhook::parse(call.to_string().as_bytes()).unwrap();
        assert_eq!(
            (parsed.changes[0].field.as_str(), parsed.changes[0].calls[0].status.as_deref()),
            ("calls", Some("FAILED"))
        );
    }

    #[test]
    fn batch_packs_several_updates_into_one_post() {
        let from = Customer { wa_id: "1".into(), name: "n".into() };
        let values = (0..3).map(|i| message_value("text", &format!("w{i}"), &from, "t", 1).unwrap()).collect();
        let parsed = webhook::parse(batch("1", values).to_string().as_bytes()).unwrap();
        assert_eq!(parsed.message_count(), 3);
    }

    #[test]
    fn merged_values_carry_many_messages_and_each_sender_once() {
        let customer = |i: u32| Customer { wa_id: format!("1555000000{i}"), name: format!("Customer {i}") };
        // Customer 1 writes twice: one contact entry for both messages.
        let values = [1, 2, 1, 3]
            .iter()
            .enumerate()
            .map(|(n, i)| message_value("text", &format!("w{n}"), &customer(*i), "t", 1).unwrap())
            .collect();
        let statuses = (0..2).map(|n| status_value("read", &format!("s{n}"), "15550000001", 1)).collect();
        let body = batch("1", vec![merge_values(values), merge_values(statuses)]);
        let parsed = webhook::parse(body.to_string().as_bytes()).unwrap();
        let (messages, statuses) = (&parsed.changes[0], &parsed.changes[1]);
        assert_eq!(messages.messages.len(), 4);
        assert_eq!(messages.contacts.len(), 3);
        assert!(messages.statuses.is_empty());
        for m in &messages.messages {
            let sender = messages.sender_of(m).unwrap();
            assert_eq!(sender.wa_id, m.from);
            let digit = m.from.as_ref().unwrap().chars().last().unwrap();
            assert_eq!(sender.profile_name.as_deref(), Some(format!("Customer {digit}").as_str()));
        }
        assert_eq!(statuses.statuses.len(), 2);
        assert!(statuses.messages.is_empty());
        assert_eq!(parsed.message_count(), 4);
        assert_eq!(parsed.status_count(), 2);
    }
}
