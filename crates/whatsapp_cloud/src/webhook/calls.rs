//! Calls of the Calling API (`value.calls[]`): a call rang or ended.

use super::{int_at, str_at, unix_at};
use serde_json::Value;

/// One event of a WhatsApp call: `connect` (it rings) or `terminate` (it ended, with how).
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `id`: `wacid.…`, the same for every event of one call.
    pub call_id: String,
    pub from: Option<String>,
    pub to: Option<String>,
    /// `event`: `connect` or `terminate`.
    pub event: String,
    /// `direction`: `USER_INITIATED` (the customer called) or `BUSINESS_INITIATED`.
    pub direction: Option<String>,
    pub timestamp: Option<i64>,
    /// On `terminate`: `status` (e.g. `COMPLETED`, `FAILED`), `start_time`, `end_time`, `duration` (s).
    pub status: Option<String>,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub duration: Option<i64>,
    pub raw: Value,
}

/// A `value.calls[]` item; `None` without a call id or an event.
pub(super) fn parse_call(c: &Value) -> Option<Call> {
    Some(Call {
        call_id: str_at(c, &["id"])?,
        from: str_at(c, &["from"]),
        to: str_at(c, &["to"]),
        event: str_at(c, &["event"])?,
        direction: str_at(c, &["direction"]),
        timestamp: unix_at(c, &["timestamp"]),
        status: str_at(c, &["status"]),
        start_time: unix_at(c, &["start_time"]),
        end_time: unix_at(c, &["end_time"]),
        duration: int_at(c, &["duration"]),
        raw: c.clone(),
    })
}
