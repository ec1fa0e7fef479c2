//! Statuses of outbound messages (`value.statuses[]`): delivery, read, failure, and what Meta
//! charges for the message.

use super::{str_at, unix_at};
use serde_json::Value;

/// A status of an outbound message from `value.statuses[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub wamid: String,
    pub status: String,
    pub timestamp: Option<i64>,
    /// The customer, or the group id for a message sent to a group.
    pub recipient_id: Option<String>,
    /// `recipient_type`: `group` for a message sent to a group.
    pub recipient_type: Option<String>,
    /// `recipient_participant_id`: the participant a group status is about (Meta sends one
    /// status object per participant that received or read the message).
    pub participant_id: Option<String>,
    pub error_code: Option<i64>,
    pub error_title: Option<String>,
    pub error_details: Option<String>,
    /// What Meta charges for the message (on `sent` and one of `delivered` / `read`).
    pub pricing: Option<Pricing>,
    /// The outbox id this extension put in the send's `biz_opaque_callback_data` (see
    /// [`crate::graph_api::with_callback_data`]), echoed by Meta; `None` for other senders'.
    pub outbox_id: Option<i64>,
    pub raw: Value,
}

/// `statuses[].pricing`: Meta bills per message since July 2025 (`pricing_model` `PMP`;
/// `CBP` before, per conversation).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pricing {
    /// `pricing_model`: `PMP` (per message) or `CBP` (per conversation, before July 2025).
    pub model: Option<String>,
    /// `type`: `regular`, `free_customer_service` or `free_entry_point`.
    pub kind: Option<String>,
    /// `category`: `marketing`, `utility`, `authentication`, `service`, ...
    pub category: Option<String>,
    /// `billable` (to be deprecated by Meta; under PMP, `type = regular` says the same).
    pub billable: Option<bool>,
}

/// A `value.statuses[]` item; `None` without a wamid or a status.
pub(super) fn parse_status(s: &Value) -> Option<Status> {
    let error = s.get("errors").and_then(Value::as_array).and_then(|e| e.first());
    Some(Status {
        wamid: str_at(s, &["id"])?,
        status: str_at(s, &["status"])?,
        timestamp: unix_at(s, &["timestamp"]),
        recipient_id: str_at(s, &["recipient_id"]),
        recipient_type: str_at(s, &["recipient_type"]),
        participant_id: str_at(s, &["recipient_participant_id"]),
        error_code: error.and_then(|e| e.get("code")).and_then(Value::as_i64),
        error_title: error.and_then(|e| str_at(e, &["title"]).or_else(|| str_at(e, &["message"]))),
        error_details: error.and_then(|e| str_at(e, &["error_data", "details"])),
        pricing: s.get("pricing").filter(|p| p.is_object()).map(|p| Pricing {
            model: str_at(p, &["pricing_model"]),
            kind: str_at(p, &["type"]),
            category: str_at(p, &["category"]),
            billable: p.get("billable").and_then(Value::as_bool),
        }),
        outbox_id: str_at(s, &["biz_opaque_callback_data"]).and_then(|c| crate::graph_api::callback_message_id(&c)),
        raw: s.clone(),
    })
}
