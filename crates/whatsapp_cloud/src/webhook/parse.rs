//! Parsing a webhook POST body: every `entry[].changes[]` becomes a [`Change`], each list of
//! items in it read by the file for that kind of item.

use super::bad_input::{replace_nul, take_too_deep};
use super::business::parse_business;
use super::calls::parse_call;
use super::contacts::{parse_contact, parse_contact_sync, parse_user_id_update};
use super::groups::parse_group_event;
use super::history::{history_media, parse_history};
use super::messages::{parse_echo, parse_message};
use super::preferences::{parse_user_preference, preference_of_system_message};
use super::statuses::parse_status;
use super::{Change, ParseError, Payload, Rejected, int_at, str_at};
use crate::salvage;
use serde_json::Value;

/// Parses a webhook POST body. Fails only when the body is not JSON or has no `entry` array;
/// anything inside that is unexpected is kept raw or reported in [`Change::rejected`].
pub fn parse(body: &[u8]) -> Result<Payload, ParseError> {
    let (mut root, repaired) = match serde_json::from_slice::<Value>(body) {
        Ok(root) => (root, false),
        // A lone surrogate or a value nested too deep spoils the whole document for
        // serde_json: repaired, it costs only the items that hold it (see salvage).
        Err(e) => match salvage::repair(body).and_then(|fixed| serde_json::from_slice::<Value>(&fixed).ok()) {
            Some(root) => (root, true),
            None => return Err(ParseError(format!("body is not JSON: {e}"))),
        },
    };
    replace_nul(&mut root);
    let entries = root
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| ParseError("body has no \"entry\" array: not a WhatsApp Business Account webhook".into()))?;
    let mut changes = Vec::new();
    for entry in entries {
        for change in entry.get("changes").and_then(Value::as_array).into_iter().flatten() {
            let too_deep = if repaired { take_too_deep(change) } else { (None, Vec::new()) };
            let mut parsed = parse_change(too_deep.0.as_ref().unwrap_or(change));
            parsed.rejected.extend(too_deep.1);
            parsed.business_account_id = str_at(entry, &["id"]);
            let at = int_at(entry, &["time"]);
            parsed.business.iter_mut().for_each(|e| e.at = at);
            changes.push(parsed);
        }
    }
    Ok(Payload { changes })
}

/// One `entry[].changes[]` item: each list in its `value` read in turn, and every item that
/// cannot be used kept in [`Change::rejected`].
fn parse_change(change: &Value) -> Change {
    let value = change.get("value").unwrap_or(&Value::Null);
    let items = |key: &str| value.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let field = str_at(change, &["field"]).unwrap_or_default();
    let display_phone_number = str_at(value, &["metadata", "display_phone_number"]);
    let mut rejected = Vec::new();
    let contacts = items("contacts").iter().map(parse_contact).collect();
    let mut messages = collect(items("messages"), "message without an id (wamid)", &mut rejected, parse_message);
    let echoes = collect(items("message_echoes"), "message echo without an id (wamid)", &mut rejected, parse_echo);
    let user_id_updates =
        collect(items("user_id_update"), "user_id_update without user_id.current", &mut rejected, parse_user_id_update);
    let calls = collect(items("calls"), "call without an id or event", &mut rejected, parse_call);
    let groups = collect(items("groups"), "group event without a group_id or type", &mut rejected, parse_group_event);
    let (mut history, history_chunks) = parse_history(items("history"), &mut rejected);
    if field == "history" {
        // The media of history messages: ordinary message objects, sent after the chunk that
        // announced them as `media_placeholder`.
        history.extend(messages.drain(..).map(|m| history_media(m, display_phone_number.as_deref())));
    }
    let contact_syncs = collect(
        items("state_sync"),
        "contact sync without a phone number or action",
        &mut rejected,
        parse_contact_sync,
    );
    let mut user_preferences = collect(
        items("user_preferences"),
        "user_preferences item without wa_id or user_id, or not a marketing_messages stop or resume",
        &mut rejected,
        parse_user_preference,
    );
    user_preferences.extend(messages.iter().filter_map(preference_of_system_message));
    let statuses = collect(items("statuses"), "status without an id (wamid) or status", &mut rejected, parse_status);
    Change {
        phone_number_id: str_at(value, &["metadata", "phone_number_id"]),
        display_phone_number,
        contacts,
        messages,
        statuses,
        echoes,
        user_id_updates,
        calls,
        groups,
        history,
        history_chunks,
        contact_syncs,
        user_preferences,
        business: parse_business(&field, value),
        field,
        rejected,
        business_account_id: None,
    }
}

/// The items `read` makes sense of; each of the others goes to `rejected` with `reason`, so
/// that nothing Meta sent is dropped silently.
pub(super) fn collect<T>(
    items: &[Value],
    reason: &'static str,
    rejected: &mut Vec<Rejected>,
    read: impl Fn(&Value) -> Option<T>,
) -> Vec<T> {
    let mut kept = Vec::new();
    for item in items {
        match read(item) {
            Some(t) => kept.push(t),
            None => rejected.push(Rejected { reason, raw: item.clone() }),
        }
    }
    kept
}
