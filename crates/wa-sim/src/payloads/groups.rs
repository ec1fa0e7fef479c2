//! Meta's Groups API webhooks: a participant's message in a group, the statuses of a group
//! send, and the group management events (lifecycle, participants, settings, suspension).

use super::{Customer, message_value};
use serde_json::{Value, json};

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
/// call that caused it, and a stable one lets a test match the two (the simulated Graph API
/// answers a group's creation with this id too).
pub(crate) fn group_request_id(group_id: &str) -> String {
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
                            "request_id": group_request_id(group_id) });
    if kind == "group_create" {
        group["subject"] = json!(subject);
        if !failed {
            group["invite_link"] = json!(group_invite_link(group_id));
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
pub(crate) fn group_invite_link(group_id: &str) -> String {
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
        "request_id": group_request_id(group_id),
        "group_subject": { "text": subject, "update_successful": true },
        "group_description": { "text": description, "update_successful": true }
    }))
}

/// A `changes[].value` (field `group_status_update`) saying that Meta suspended a group
/// (`group_suspend`) or lifted the suspension (`group_suspend_cleared`).
pub fn group_suspension_value(kind: &str, group_id: &str, timestamp: i64) -> Value {
    groups(json!({ "timestamp": timestamp.to_string(), "type": kind, "group_id": group_id }))
}
