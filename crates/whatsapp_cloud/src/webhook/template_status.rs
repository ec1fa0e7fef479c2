//! A `message_template_status_update` change: Meta approved, rejected, paused or disabled one
//! of the account's templates.

use super::str_at;
use serde_json::Value;

/// A `message_template_status_update` change: Meta approved, rejected, paused or disabled a
/// template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateStatus {
    /// `event`: APPROVED, REJECTED, PAUSED, DISABLED, PENDING_DELETION, ...
    pub status: String,
    pub template_id: Option<String>,
    pub name: String,
    pub language: String,
    pub reason: Option<String>,
}

/// The template and its new status, for a change of field `message_template_status_update`.
pub(super) fn parse_template_status(field: Option<&str>, value: &Value) -> Option<TemplateStatus> {
    if field != Some("message_template_status_update") {
        return None;
    }
    Some(TemplateStatus {
        status: str_at(value, &["event"])?,
        template_id: str_at(value, &["message_template_id"]),
        name: str_at(value, &["message_template_name"])?,
        language: str_at(value, &["message_template_language"])?,
        reason: str_at(value, &["reason"]).filter(|r| r != "NONE"),
    })
}
