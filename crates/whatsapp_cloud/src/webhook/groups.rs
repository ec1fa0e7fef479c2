//! Events of the Groups API (`value.groups[]`): a group was created or deleted, people joined
//! or left, its settings changed, it was suspended.

use super::{str_at, unix_at};
use serde_json::Value;

/// One event of the Groups API's webhooks (`value.groups[]`). Which fields are set depends on
/// `kind`: `group_create` / `group_delete` (lifecycle), `group_participants_add` /
/// `group_participants_remove` / `group_join_request_created` / `group_join_request_revoked`
/// (participants), `group_settings_update`, `group_suspend` / `group_suspend_cleared` (status).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupEvent {
    pub group_id: String,
    /// `type`.
    pub kind: String,
    pub timestamp: Option<i64>,
    /// On `group_create`, or a `group_settings_update` whose `group_subject` succeeded.
    pub subject: Option<String>,
    pub description: Option<String>,
    pub invite_link: Option<String>,
    pub join_approval_mode: Option<String>,
    /// WhatsApp ids of participants who joined (`added_participants[].wa_id`, else `input`).
    pub added: Vec<String>,
    /// WhatsApp ids (or the `input` the business gave) of participants removed or who left.
    pub removed: Vec<String>,
    /// The request failed (`errors[]` present): a group that could not be created, a deletion
    /// that did not happen.
    pub failed: bool,
    pub raw: Value,
}

/// A `value.groups[]` item; `None` without a group id or a type.
pub(super) fn parse_group_event(g: &Value) -> Option<GroupEvent> {
    // A setting that failed to change (`update_successful: false`) is not the group's.
    let setting = |key: &str| {
        let s = g.get(key)?;
        if s.get("update_successful").and_then(Value::as_bool) == Some(false) {
            return None;
        }
        str_at(s, &["text"])
    };
    let participants = |key: &str| -> Vec<String> {
        g.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| str_at(p, &["wa_id"]).or_else(|| str_at(p, &["input"])))
            .map(|id| id.trim_start_matches('+').to_string())
            .collect()
    };
    Some(GroupEvent {
        group_id: str_at(g, &["group_id"])?,
        kind: str_at(g, &["type"])?,
        timestamp: unix_at(g, &["timestamp"]),
        subject: str_at(g, &["subject"]).or_else(|| setting("group_subject")),
        description: str_at(g, &["description"]).or_else(|| setting("group_description")),
        invite_link: str_at(g, &["invite_link"]),
        join_approval_mode: str_at(g, &["join_approval_mode"]),
        added: participants("added_participants"),
        removed: participants("removed_participants"),
        failed: g.get("errors").and_then(Value::as_array).is_some_and(|e| !e.is_empty()),
        raw: g.clone(),
    })
}
