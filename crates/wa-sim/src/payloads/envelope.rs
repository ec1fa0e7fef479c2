//! The wrapping of `changes[].value`s into a webhook body: one entry with its changes, each
//! under the field Meta sends it with and with the business number's metadata.

use super::BUSINESS_NUMBER;
use serde_json::{Value, json};

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
pub(super) fn field_of(value: &Value) -> &'static str {
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
    } else if value.get("user_preferences").is_some() {
        "user_preferences"
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
