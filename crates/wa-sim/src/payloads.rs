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

/// Group webhooks `wa-sim trigger` sends (Meta's Groups API): a participant's text in a group,
/// the group created or deleted, a participant joining (by invite link) or leaving, and the
/// group suspended.
pub const GROUP_KINDS: &[&str] =
    &["group_text", "group_create", "group_delete", "group_join", "group_leave", "group_suspend"];

/// Coexistence onboarding webhooks `wa-sim trigger` sends: one chunk of chat history, the
/// business declining to share it, and one contact of the WhatsApp Business app synced.
pub const HISTORY_KINDS: &[&str] = &["history", "history_declined", "contacts_sync"];

/// The business number's display number: `metadata.display_phone_number`, and the `from` of
/// the business's own messages in history.
const BUSINESS_NUMBER: &str = "15550783881";

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

/// The same for a value whose keys do not tell its field: a history media message is an
/// ordinary `messages[]` value that Meta sends under `history`.
pub fn envelope_with_field(phone_number_id: &str, field: &str, value: Value) -> Value {
    changes(phone_number_id, vec![(field.to_string(), value)])
}

/// The `changes[].field` Meta sends a value under.
fn field_of(value: &Value) -> &'static str {
    if let Some(kind) = value["groups"][0]["type"].as_str() {
        group_field(kind)
    } else if value.get("history").is_some() {
        "history"
    } else if value.get("state_sync").is_some() {
        "smb_app_state_sync"
    } else if value.get("message_echoes").is_some() {
        "smb_message_echoes"
    } else if value.get("user_id_update").is_some() {
        "user_id_update"
    } else if value.get("calls").is_some() {
        "calls"
    } else {
        "messages"
    }
}

/// The field of a `groups[]` value, by the `type` of its event: Meta sends each family of
/// group events under its own subscription field.
fn group_field(kind: &str) -> &'static str {
    if kind.starts_with("group_participants") || kind.starts_with("group_join_request") {
        "group_participants_update"
    } else if kind == "group_settings_update" {
        "group_settings_update"
    } else if kind.starts_with("group_suspend") {
        "group_status_update"
    } else {
        "group_lifecycle_update"
    }
}

/// Several updates in one POST, as Meta batches them: one entry, one change per update.
pub fn batch(phone_number_id: &str, values: Vec<Value>) -> Value {
    changes(phone_number_id, values.into_iter().map(|v| (field_of(&v).to_string(), v)).collect())
}

/// One entry with one change per `(field, value)`.
fn changes(phone_number_id: &str, values: Vec<(String, Value)>) -> Value {
    let changes: Vec<Value> = values
        .into_iter()
        .map(|(field, v)| json!({ "value": with_metadata(phone_number_id, v), "field": field }))
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
    value["metadata"] = json!({ "display_phone_number": BUSINESS_NUMBER, "phone_number_id": phone_number_id });
    value
}

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

/// The media part of an inbound media message: what a client downloads it by (the demo media
/// every `wa-sim graph` serves, see [`crate::demo_media`]).
fn media_object(mime: &str) -> Value {
    let sha256 = crate::graph::sha256_base64(&crate::demo_media::bytes(mime));
    json!({ "mime_type": mime, "sha256": sha256, "id": crate::demo_media::id(mime) })
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

/// A `changes[].value` with one message a participant wrote in a group: the message of
/// [`message_value`] with the `group_id` it was written in. `contacts[]` names the participant,
/// not the group: it is who wrote, as in a one-to-one chat.
pub fn group_message_value(
    kind: &str,
    wamid: &str,
    group_id: &str,
    from: &Customer,
    text: &str,
    timestamp: i64,
) -> Option<Value> {
    let mut value = message_value(kind, wamid, from, text, timestamp)?;
    if let Some(message) = value["messages"].get_mut(0) {
        message["group_id"] = json!(group_id);
    }
    Some(value)
}

/// A `changes[].value` with the statuses of a message sent to a group. A group message is
/// `sent` once, to the group; it is `delivered` and `read` by each participant, and Meta
/// aggregates those into one webhook: one status per participant, which
/// `recipient_participant_id` tells apart. `participants` is used only for those two.
pub fn group_status_value(status: &str, wamid: &str, group_id: &str, participants: &[&str], timestamp: i64) -> Value {
    let item = || {
        json!({ "id": wamid, "status": status, "timestamp": timestamp.to_string(),
                "recipient_id": group_id, "recipient_type": "group" })
    };
    let items: Vec<Value> = match status {
        "delivered" | "read" => participants
            .iter()
            .map(|p| {
                let mut s = item();
                s["recipient_participant_id"] = json!(p);
                s
            })
            .collect(),
        "failed" => {
            let mut s = item();
            s["errors"] = json!([{
                "code": 131000,
                "title": "Something went wrong",
                "message": "Something went wrong",
                "error_data": { "details": "Message failed to send because of an unknown error." }
            }]);
            vec![s]
        }
        _ => vec![item()],
    };
    json!({ "statuses": items })
}

/// `request_id` of the simulated request behind a group event: Meta echoes the id of the API
/// call that caused it, and a stable one lets a test match the two.
fn request_id(group_id: &str) -> String {
    format!("req-{group_id}")
}

/// A `groups[]` value: Meta's group management webhooks carry one event object each.
fn groups(group: Value) -> Value {
    json!({ "groups": [group] })
}

/// A `changes[].value` (field `group_lifecycle_update`) saying that a group was created
/// (`group_create`: with its subject, invite link and join approval mode) or deleted
/// (`group_delete`). A `failed` event carries `errors[]` and, as in Meta's example of a failed
/// creation, no invite link nor approval mode: there is no group to join.
pub fn group_lifecycle_value(kind: &str, group_id: &str, subject: &str, timestamp: i64, failed: bool) -> Value {
    let mut group = json!({ "timestamp": timestamp.to_string(), "group_id": group_id, "type": kind,
                            "request_id": request_id(group_id) });
    if kind == "group_create" {
        group["subject"] = json!(subject);
        if !failed {
            group["invite_link"] = json!(invite_link(group_id));
            group["join_approval_mode"] = json!("auto_approve");
        }
    }
    if failed {
        group["errors"] = json!([{
            "code": 131200,
            "message": "Group operation failed",
            "title": "Group operation failed",
            "error_data": { "details": format!("The simulator failed {kind} of group {group_id}.") }
        }]);
    }
    groups(group)
}

/// An invite link derived from the group id, so that a test can predict it. Meta's links end
/// in a code of letters and digits.
fn invite_link(group_id: &str) -> String {
    let code: String = group_id.chars().filter(char::is_ascii_alphanumeric).take(20).collect();
    format!("https://chat.whatsapp.com/SIM{code}")
}

/// A `changes[].value` (field `group_participants_update`) saying that customers joined a group
/// (`group_participants_add`, by its invite link) or left it (`group_participants_remove`,
/// initiated by the participant: leaving is removing oneself).
pub fn group_participants_value(kind: &str, group_id: &str, wa_ids: &[&str], timestamp: i64) -> Value {
    let participants: Vec<Value> = wa_ids.iter().map(|w| json!({ "wa_id": w })).collect();
    let mut group = json!({ "timestamp": timestamp.to_string(), "group_id": group_id, "type": kind });
    match kind {
        "group_participants_add" => {
            group["reason"] = json!("invite_link");
            group["added_participants"] = json!(participants);
        }
        _ => {
            group["initiated_by"] = json!("participant");
            group["removed_participants"] = json!(participants);
        }
    }
    groups(group)
}

/// A `changes[].value` (field `group_settings_update`) saying that the group's subject and
/// description were both changed.
pub fn group_settings_value(group_id: &str, subject: &str, description: &str, timestamp: i64) -> Value {
    groups(json!({
        "timestamp": timestamp.to_string(), "group_id": group_id, "type": "group_settings_update",
        "request_id": request_id(group_id),
        "group_subject": { "text": subject, "update_successful": true },
        "group_description": { "text": description, "update_successful": true }
    }))
}

/// A `changes[].value` (field `group_status_update`) saying that Meta suspended a group
/// (`group_suspend`) or lifted the suspension (`group_suspend_cleared`).
pub fn group_suspension_value(kind: &str, group_id: &str, timestamp: i64) -> Value {
    groups(json!({ "timestamp": timestamp.to_string(), "type": kind, "group_id": group_id }))
}

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
/// (use [`envelope_with_field`]: its keys look like any inbound message's). As in Meta's
/// example it carries no `contacts[]`: the customer's name is not sent.
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

    /// The one change of a webhook: its field and value, checked as JSON (the extension's
    /// parser is being taught these kinds separately).
    fn only_change(body: &Value) -> (&str, &Value) {
        let changes = body["entry"][0]["changes"].as_array().unwrap();
        assert_eq!(changes.len(), 1);
        (changes[0]["field"].as_str().unwrap(), &changes[0]["value"])
    }

    const GROUP: &str = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD";

    #[test]
    fn group_messages_are_messages_with_the_group_id() {
        let from = Customer { wa_id: "16505551234".into(), name: "Sheena".into() };
        let body = envelope("1", group_message_value("text", "wamid.g", GROUP, &from, "hi all", 7).unwrap());
        let (field, value) = only_change(&body);
        assert_eq!(field, "messages");
        let m = &value["messages"][0];
        assert_eq!((m["group_id"].as_str(), m["from"].as_str()), (Some(GROUP), Some("16505551234")));
        assert_eq!(
            (m["type"].as_str(), m["text"]["body"].as_str(), m["timestamp"].as_str()),
            (Some("text"), Some("hi all"), Some("7"))
        );
        assert_eq!(value["contacts"], json!([{ "profile": { "name": "Sheena" }, "wa_id": "16505551234" }]));
        assert!(group_message_value("nonsense", "w", GROUP, &from, "t", 1).is_none());
    }

    #[test]
    fn group_statuses_are_one_per_participant_once_delivered() {
        let participants = ["15550001001", "15550001002"];
        let sent = group_status_value("sent", "wamid.g", GROUP, &participants, 5);
        assert_eq!(
            sent,
            json!({ "statuses": [{ "id": "wamid.g", "status": "sent", "timestamp": "5",
                                   "recipient_id": GROUP, "recipient_type": "group" }] })
        );
        for status in ["delivered", "read"] {
            let value = group_status_value(status, "wamid.g", GROUP, &participants, 6);
            let items = value["statuses"].as_array().unwrap();
            assert_eq!(items.len(), 2, "{status}");
            for (item, participant) in items.iter().zip(participants) {
                assert_eq!(item["recipient_participant_id"], participant);
                assert_eq!(
                    (item["recipient_id"].as_str(), item["recipient_type"].as_str()),
                    (Some(GROUP), Some("group"))
                );
                assert_eq!((item["status"].as_str(), item["timestamp"].as_str()), (Some(status), Some("6")));
            }
        }
        let failed = group_status_value("failed", "wamid.g", GROUP, &participants, 7);
        let items = failed["statuses"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["errors"][0]["code"], 131000);
        assert_eq!(items[0]["errors"][0]["title"], "Something went wrong");
        assert!(items[0]["errors"][0]["error_data"]["details"].is_string());
        assert!(items[0].get("recipient_participant_id").is_none());
        assert_eq!(only_change(&envelope("1", failed)).0, "messages");
    }

    #[test]
    fn group_management_webhooks_go_under_their_own_fields() {
        let created = group_lifecycle_value("group_create", GROUP, "Support", 9, false);
        let group = &created["groups"][0];
        assert_eq!(group["type"], "group_create");
        assert_eq!((group["group_id"].as_str(), group["timestamp"].as_str()), (Some(GROUP), Some("9")));
        assert_eq!(group["request_id"], format!("req-{GROUP}"));
        assert_eq!(group["subject"], "Support");
        assert!(group["invite_link"].as_str().unwrap().starts_with("https://chat.whatsapp.com/SIM"));
        assert_eq!(group["join_approval_mode"], "auto_approve");
        assert!(group.get("errors").is_none());
        assert_eq!(only_change(&envelope("1", created.clone())).0, "group_lifecycle_update");

        let failed = group_lifecycle_value("group_create", GROUP, "Support", 9, true);
        let group = &failed["groups"][0];
        assert!(group.get("invite_link").is_none());
        let error = &group["errors"][0];
        assert_eq!(error["code"], 131200);
        assert!(
            error["message"].is_string() && error["title"].is_string() && error["error_data"]["details"].is_string()
        );

        let deleted = group_lifecycle_value("group_delete", GROUP, "ignored", 10, false);
        assert_eq!(
            deleted,
            json!({ "groups": [{ "timestamp": "10", "group_id": GROUP, "type": "group_delete",
                                 "request_id": format!("req-{GROUP}") }] })
        );
        assert_eq!(only_change(&envelope("1", deleted)).0, "group_lifecycle_update");

        let added = group_participants_value("group_participants_add", GROUP, &["15550001001", "15550001002"], 11);
        assert_eq!(
            added["groups"][0],
            json!({ "timestamp": "11", "group_id": GROUP, "type": "group_participants_add", "reason": "invite_link",
                    "added_participants": [{ "wa_id": "15550001001" }, { "wa_id": "15550001002" }] })
        );
        assert_eq!(only_change(&envelope("1", added)).0, "group_participants_update");
        let removed = group_participants_value("group_participants_remove", GROUP, &["15550001001"], 12);
        assert_eq!(
            removed["groups"][0],
            json!({ "timestamp": "12", "group_id": GROUP, "type": "group_participants_remove",
                    "initiated_by": "participant", "removed_participants": [{ "wa_id": "15550001001" }] })
        );
        assert_eq!(only_change(&envelope("1", removed)).0, "group_participants_update");

        let settings = group_settings_value(GROUP, "New subject", "New description", 13);
        let group = &settings["groups"][0];
        assert_eq!(group["type"], "group_settings_update");
        assert_eq!(group["request_id"], format!("req-{GROUP}"));
        assert_eq!(group["group_subject"], json!({ "text": "New subject", "update_successful": true }));
        assert_eq!(group["group_description"], json!({ "text": "New description", "update_successful": true }));
        assert_eq!(only_change(&envelope("1", settings)).0, "group_settings_update");

        for kind in ["group_suspend", "group_suspend_cleared"] {
            let value = group_suspension_value(kind, GROUP, 14);
            assert_eq!(value, json!({ "groups": [{ "timestamp": "14", "type": kind, "group_id": GROUP }] }));
            assert_eq!(only_change(&envelope("1", value)).0, "group_status_update");
        }
    }

    #[test]
    fn history_chunks_hold_threads_of_both_sides() {
        let message = |wamid: &str, from_business: bool, kind: &str, status: &str| HistoryMessage {
            wamid: wamid.into(),
            from_business,
            kind: kind.into(),
            body: format!("body of {wamid}"),
            timestamp: 100,
            status: status.into(),
        };
        let threads = vec![(
            "16505551234".to_string(),
            vec![
                message("wamid.h1", true, "text", "READ"),
                message("wamid.h2", false, "text", "DELIVERED"),
                message("wamid.h3", false, "media_placeholder", "PLAYED"),
            ],
        )];
        let body = envelope("1", history_value(1, 3, 40, &threads));
        let (field, value) = only_change(&body);
        assert_eq!(field, "history");
        assert_eq!(value["metadata"]["phone_number_id"], "1");
        let chunk = &value["history"][0];
        assert_eq!(chunk["metadata"], json!({ "phase": 1, "chunk_order": 3, "progress": 40 }));
        let thread = &chunk["threads"][0];
        assert_eq!(thread["id"], "16505551234");
        let messages = thread["messages"].as_array().unwrap();
        assert_eq!(
            messages[0],
            json!({ "from": "15550783881", "id": "wamid.h1", "timestamp": "100", "type": "text",
                    "text": { "body": "body of wamid.h1" }, "history_context": { "status": "READ" } })
        );
        assert_eq!(
            (messages[1]["from"].as_str(), messages[1]["history_context"]["status"].as_str()),
            (Some("16505551234"), Some("DELIVERED"))
        );
        assert_eq!(
            messages[2],
            json!({ "from": "16505551234", "id": "wamid.h3", "timestamp": "100", "type": "media_placeholder",
                    "history_context": { "status": "PLAYED" } })
        );

        let declined = envelope("1", history_declined_value());
        let (field, value) = only_change(&declined);
        assert_eq!(field, "history");
        let error = &value["history"][0]["errors"][0];
        assert_eq!(error["code"], 2593109);
        assert_eq!(error["title"], "History sync is turned off by the business from the WhatsApp Business App");
        assert_eq!(error["message"], error["title"]);
        assert_eq!(error["error_data"]["details"], "History sharing is turned off by the business");
    }

    #[test]
    fn history_media_is_an_ordinary_message_under_the_history_field() {
        let from = Customer { wa_id: "16505551234".into(), name: "Sheena".into() };
        let value = history_media_value("wamid.h3", &from, "the photo", 100);
        assert_eq!(field_of(&value), "messages", "its keys alone would say messages");
        let body = envelope_with_field("1", "history", value);
        let (field, value) = only_change(&body);
        assert_eq!(field, "history");
        assert_eq!(value["messaging_product"], "whatsapp");
        let m = &value["messages"][0];
        assert_eq!(
            (m["from"].as_str(), m["id"].as_str(), m["timestamp"].as_str()),
            (Some("16505551234"), Some("wamid.h3"), Some("100"))
        );
        assert_eq!(m["type"], "image");
        let image = &m["image"];
        assert_eq!((image["caption"].as_str(), image["mime_type"].as_str()), (Some("the photo"), Some("image/png")));
        assert!(image["sha256"].is_string() && image["id"].is_string());
    }

    #[test]
    fn contacts_sync_names_each_contact_and_its_action() {
        let value = state_sync_value(&[("16505551234", "Sheena Nelson", "add"), ("16505550000", "Bob", "remove")], 50);
        let body = envelope("1", value);
        let (field, value) = only_change(&body);
        assert_eq!(field, "smb_app_state_sync");
        assert_eq!(
            value["state_sync"][0],
            json!({ "type": "contact",
                    "contact": { "full_name": "Sheena Nelson", "first_name": "Sheena", "phone_number": "16505551234" },
                    "action": "add", "metadata": { "timestamp": "50" } })
        );
        assert_eq!(
            (value["state_sync"][1]["action"].as_str(), value["state_sync"][1]["contact"]["first_name"].as_str()),
            (Some("remove"), Some("Bob"))
        );
    }

    #[test]
    fn a_batch_of_new_kinds_keeps_each_field() {
        let body = batch(
            "1",
            vec![
                group_suspension_value("group_suspend", GROUP, 1),
                history_declined_value(),
                state_sync_value(&[("1", "A", "add")], 1),
                status_value("read", "w", "1", 1),
            ],
        );
        let fields: Vec<&str> =
            body["entry"][0]["changes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["group_status_update", "history", "smb_app_state_sync", "messages"]);
    }
}
