//! Webhooks Meta sends: the GET subscription handshake and the POST payload.
//!
//! Parsing is deliberately lenient: Meta adds fields and types every few months, and a non-200
//! answer makes it redeliver for 7 days. So only what routing and idempotency need is
//! required (a wamid per message or status); everything else is optional, the raw JSON of
//! every item is kept, and items that lack even a wamid are reported, not dropped silently.

use crate::salvage;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// GET handshake

/// Why a subscription handshake (`GET ?hub.mode=subscribe&hub.verify_token=..&hub.challenge=..`)
/// was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// `hub.mode` is missing or not `subscribe`.
    NotSubscribe,
    /// `hub.challenge` is missing or empty: nothing to echo.
    NoChallenge,
    /// `hub.challenge` is not what Meta sends (digits and URL-safe characters, at most
    /// [`MAX_CHALLENGE`]): echoing anything else would let a stranger make this server
    /// answer with text of their choosing.
    BadChallenge,
    /// The verify token differs from the channel's.
    TokenMismatch,
}

/// The longest `hub.challenge` echoed (Meta's are ten-digit numbers).
pub const MAX_CHALLENGE: usize = 64;

/// Answers Meta's handshake: `Ok(challenge)` to echo back as the 200 body, exactly as sent.
pub fn verify_subscription(query: &str, verify_token: &str) -> Result<String, HandshakeError> {
    let (mut mode, mut token, mut challenge) = (None, None, None);
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match percent_decode(key).as_str() {
            "hub.mode" => mode = Some(percent_decode(value)),
            "hub.verify_token" => token = Some(percent_decode(value)),
            "hub.challenge" => challenge = Some(percent_decode(value)),
            _ => {}
        }
    }
    if mode.as_deref() != Some("subscribe") {
        return Err(HandshakeError::NotSubscribe);
    }
    if !constant_time_eq(token.unwrap_or_default().as_bytes(), verify_token.as_bytes()) {
        return Err(HandshakeError::TokenMismatch);
    }
    match challenge {
        Some(c) if c.is_empty() => Err(HandshakeError::NoChallenge),
        Some(c) if c.len() <= MAX_CHALLENGE && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)) => {
            Ok(c)
        }
        Some(_) => Err(HandshakeError::BadChallenge),
        None => Err(HandshakeError::NoChallenge),
    }
}

/// Compares two byte strings without an early exit, so timing does not reveal a prefix.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space, `%XX` a byte).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_byte = || match bytes.get(i + 1..i + 3) {
            Some(h) if h.iter().all(u8::is_ascii_hexdigit) => u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok(),
            _ => None,
        };
        match (bytes[i], hex_byte()) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// POST payload

/// A webhook POST body, flattened: one [`Change`] per `entry[].changes[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub changes: Vec<Change>,
}

/// One `entry[].changes[]` item.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `changes[].field`: `messages` for messages, statuses and errors; other fields exist.
    pub field: String,
    /// `value.metadata.phone_number_id`: the routing key to a channel (not `entry[].id`).
    pub phone_number_id: Option<String>,
    /// `value.metadata.display_phone_number`: the business's own number (digits), which tells
    /// the business's messages from the customer's in a history thread.
    pub display_phone_number: Option<String>,
    pub contacts: Vec<Contact>,
    pub messages: Vec<Message>,
    pub statuses: Vec<Status>,
    /// `smb_message_echoes`: messages the business sent from the WhatsApp Business app on a
    /// coexistence number (`value.message_echoes[]`).
    pub echoes: Vec<Echo>,
    /// `value.user_id_update[]`: customers whose business-scoped id (BSUID) changed.
    pub user_id_updates: Vec<UserIdUpdate>,
    /// `value.calls[]` (field `calls`, the Calling API): a call began or ended.
    pub calls: Vec<Call>,
    /// `value.groups[]` (fields `group_lifecycle_update`, `group_participants_update`,
    /// `group_settings_update`, `group_status_update`, the Groups API).
    pub groups: Vec<GroupEvent>,
    /// Messages of the chat history a coexistence number shares when it is onboarded (field
    /// `history`: `value.history[].threads[].messages[]`, and the media of those messages,
    /// which Meta sends later as `value.messages[]` under the same field).
    pub history: Vec<HistoryMessage>,
    /// `value.history[].metadata` of each chunk (phase, chunk order, progress), and a refusal to
    /// share history (`value.history[].errors[]`).
    pub history_chunks: Vec<HistoryChunk>,
    /// `value.state_sync[]` (field `smb_app_state_sync`): contacts of the WhatsApp Business app
    /// added or removed.
    pub contact_syncs: Vec<ContactSync>,
    /// `value.errors[]`, kept raw.
    pub errors: Vec<Value>,
    /// Items that could not be used (no wamid), kept raw with the reason.
    pub rejected: Vec<Rejected>,
    /// `entry[].id`: the WhatsApp Business Account the change is about.
    pub business_account_id: Option<String>,
    /// For `message_template_status_update`: the template and its new status.
    pub template_status: Option<TemplateStatus>,
}

/// A message the business sent from the WhatsApp Business app (coexistence): the same shape as
/// an inbound message, with `from` the business and `to` the customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Echo {
    pub message: Message,
    /// `to`: the customer's WhatsApp id (digits).
    pub to: Option<String>,
}

/// A customer's BSUID (and parent BSUID) changed: `user_id_update[]` with `wa_id`,
/// `user_id.previous/current`, `parent_user_id.previous/current`, `timestamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdUpdate {
    pub wa_id: Option<String>,
    pub previous: Option<String>,
    pub current: String,
    pub parent_previous: Option<String>,
    pub parent_current: Option<String>,
}

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

/// A message of a shared chat history: sent or received on the WhatsApp Business app before
/// the number was onboarded to the Cloud API.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryMessage {
    pub message: Message,
    /// The customer of the thread (`threads[].id`); for a media follow-up, the sender unless
    /// that is the business.
    pub customer: Option<String>,
    /// Sent by the business (its number is `from`), not by the customer.
    pub from_business: bool,
    /// `history_context.status` in lower case (`read`, `delivered`, `sent`, `played`,
    /// `error`, `pending`).
    pub status: Option<String>,
}

/// What one `value.history[]` item says about the sync itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryChunk {
    /// 0: day 0 to 1, 1: day 1 to 90, 2: day 90 to 180 before onboarding.
    pub phase: Option<i64>,
    pub chunk_order: Option<i64>,
    /// 0 to 100; 100 means the sync is complete.
    pub progress: Option<i64>,
    pub messages: usize,
    /// `errors[0].code`: 2593109 when the business declined to share its history.
    pub error_code: Option<i64>,
    pub error: Option<String>,
}

/// A contact the business saved in (or removed from) the WhatsApp Business app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactSync {
    /// `contact.phone_number`, digits only.
    pub wa_id: String,
    /// `contact.full_name` (else `first_name`).
    pub full_name: Option<String>,
    /// `action`: `add` or `remove`.
    pub action: String,
    pub timestamp: Option<i64>,
}

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

/// A sender from `value.contacts[]`. Since 2026 either id may be missing (BSUID rollout).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Contact {
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub profile_name: Option<String>,
    pub username: Option<String>,
}

/// An inbound message from `value.messages[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub wamid: String,
    /// `from`: the sender's WhatsApp id (digits); may be omitted for username users.
    pub from: Option<String>,
    /// `from_user_id`: the sender's BSUID.
    pub from_user_id: Option<String>,
    /// `group_id`: the group it was written in (Groups API); `None` for a 1:1 message.
    pub group_id: Option<String>,
    /// Unix seconds (Meta sends a string).
    pub timestamp: Option<i64>,
    /// `type`; unknown types are kept as they are.
    pub kind: String,
    /// What an agent reads first: text body, media caption, button or list reply title, order
    /// text, system notice, or the new text of an edit.
    pub text: Option<String>,
    /// The message object exactly as received.
    pub raw: Value,
}

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

/// An item that cannot be stored as a message or status, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub reason: &'static str,
    pub raw: Value,
}

/// Why a body is not a webhook payload at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

impl Payload {
    pub fn message_count(&self) -> usize {
        self.changes.iter().map(|c| c.messages.len()).sum()
    }

    pub fn status_count(&self) -> usize {
        self.changes.iter().map(|c| c.statuses.len()).sum()
    }
}

impl Change {
    /// The contact entry that describes the sender of `message`, if Meta sent one.
    pub fn sender_of(&self, message: &Message) -> Option<&Contact> {
        let by_wa_id = message.from.as_ref().and_then(|f| self.contacts.iter().find(|c| c.wa_id.as_ref() == Some(f)));
        let by_user_id = || {
            let id = message.from_user_id.as_ref()?;
            self.contacts.iter().find(|c| c.user_id.as_ref() == Some(id))
        };
        by_wa_id.or_else(by_user_id).or(if self.contacts.len() == 1 { self.contacts.first() } else { None })
    }
}

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
            changes.push(parsed);
        }
    }
    Ok(Payload { changes })
}

/// Takes out of a change's lists (messages, statuses, ...) every item that [`salvage::repair`]
/// cut off for its depth: the change without them (`None` if there were none) and the items,
/// refused.
fn take_too_deep(change: &Value) -> (Option<Value>, Vec<Rejected>) {
    let Some(value) = change.get("value").and_then(Value::as_object) else { return (None, Vec::new()) };
    if !value.values().any(salvage::holds_too_deep) {
        return (None, Vec::new());
    }
    let mut change = change.clone();
    let mut rejected = Vec::new();
    if let Some(Value::Object(value)) = change.get_mut("value") {
        for list in value.values_mut().filter_map(Value::as_array_mut) {
            let (deep, kept): (Vec<Value>, Vec<Value>) =
                std::mem::take(list).into_iter().partition(salvage::holds_too_deep);
            *list = kept;
            rejected.extend(deep.into_iter().map(|raw| Rejected { reason: salvage::TOO_DEEP_ITEM, raw }));
        }
    }
    (Some(change), rejected)
}

/// Replaces every U+0000 in the strings (and keys) of `v` with U+FFFD. JSON allows `\u0000`
/// but Postgres' `text` and `jsonb` cannot hold it: a signed message containing one must still
/// be stored (the raw POST keeps the exact bytes).
pub fn replace_nul(v: &mut Value) {
    const NUL: char = '\u{0}';
    match v {
        Value::String(s) if s.contains(NUL) => *s = s.replace(NUL, "\u{FFFD}"),
        Value::Array(items) => items.iter_mut().for_each(replace_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains(NUL)) {
                *map = std::mem::take(map).into_iter().map(|(k, v)| (k.replace(NUL, "\u{FFFD}"), v)).collect();
            }
            map.values_mut().for_each(replace_nul);
        }
        _ => {}
    }
}

fn parse_change(change: &Value) -> Change {
    let value = change.get("value").unwrap_or(&Value::Null);
    let array = |key: &str| value.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut rejected = Vec::new();
    let contacts = array("contacts")
        .iter()
        .map(|c| Contact {
            wa_id: str_at(c, &["wa_id"]),
            user_id: str_at(c, &["user_id"]),
            profile_name: str_at(c, &["profile", "name"]),
            username: str_at(c, &["profile", "username"]),
        })
        .collect();
    let mut messages = Vec::new();
    for m in array("messages") {
        match str_at(m, &["id"]) {
            Some(wamid) => messages.push(parse_message(wamid, m)),
            None => rejected.push(Rejected { reason: "message without an id (wamid)", raw: m.clone() }),
        }
    }
    let mut echoes = Vec::new();
    for m in array("message_echoes") {
        match str_at(m, &["id"]) {
            Some(wamid) => echoes.push(Echo { message: parse_message(wamid, m), to: str_at(m, &["to"]) }),
            None => rejected.push(Rejected { reason: "message echo without an id (wamid)", raw: m.clone() }),
        }
    }
    let mut user_id_updates = Vec::new();
    for u in array("user_id_update") {
        match str_at(u, &["user_id", "current"]) {
            Some(current) => user_id_updates.push(UserIdUpdate {
                wa_id: str_at(u, &["wa_id"]),
                previous: str_at(u, &["user_id", "previous"]),
                current,
                parent_previous: str_at(u, &["parent_user_id", "previous"]),
                parent_current: str_at(u, &["parent_user_id", "current"]),
            }),
            None => rejected.push(Rejected { reason: "user_id_update without user_id.current", raw: u.clone() }),
        }
    }
    let mut calls = Vec::new();
    for c in array("calls") {
        match (str_at(c, &["id"]), str_at(c, &["event"])) {
            (Some(call_id), Some(event)) => calls.push(Call {
                call_id,
                from: str_at(c, &["from"]),
                to: str_at(c, &["to"]),
                event,
                direction: str_at(c, &["direction"]),
                timestamp: unix_at(c, &["timestamp"]),
                status: str_at(c, &["status"]),
                start_time: unix_at(c, &["start_time"]),
                end_time: unix_at(c, &["end_time"]),
                duration: int_at(c, &["duration"]),
                raw: c.clone(),
            }),
            _ => rejected.push(Rejected { reason: "call without an id or event", raw: c.clone() }),
        }
    }
    let field = str_at(change, &["field"]).unwrap_or_default();
    let display_phone_number = str_at(value, &["metadata", "display_phone_number"]);
    let mut groups = Vec::new();
    for g in array("groups") {
        match (str_at(g, &["group_id"]), str_at(g, &["type"])) {
            (Some(group_id), Some(kind)) => groups.push(parse_group_event(group_id, kind, g)),
            _ => rejected.push(Rejected { reason: "group event without a group_id or type", raw: g.clone() }),
        }
    }
    let (mut history, mut history_chunks) = (Vec::new(), Vec::new());
    for h in array("history") {
        let before = history.len();
        for thread in h.get("threads").and_then(Value::as_array).into_iter().flatten() {
            let customer = str_at(thread, &["id"]);
            for m in thread.get("messages").and_then(Value::as_array).into_iter().flatten() {
                let Some(wamid) = str_at(m, &["id"]) else {
                    rejected.push(Rejected { reason: "history message without an id (wamid)", raw: m.clone() });
                    continue;
                };
                let message = parse_message(wamid, m);
                let from_business = message.from.is_some() && message.from != customer;
                history.push(HistoryMessage {
                    message,
                    customer: customer.clone(),
                    from_business,
                    status: str_at(m, &["history_context", "status"]).map(|s| s.to_ascii_lowercase()),
                });
            }
        }
        let error = h.get("errors").and_then(Value::as_array).and_then(|e| e.first());
        history_chunks.push(HistoryChunk {
            phase: int_at(h, &["metadata", "phase"]),
            chunk_order: int_at(h, &["metadata", "chunk_order"]),
            progress: int_at(h, &["metadata", "progress"]),
            messages: history.len() - before,
            error_code: error.and_then(|e| e.get("code")).and_then(Value::as_i64),
            error: error.and_then(|e| str_at(e, &["title"]).or_else(|| str_at(e, &["message"]))),
        });
    }
    if field == "history" {
        // The media of history messages: ordinary message objects, sent after the chunk that
        // announced them as `media_placeholder`.
        for message in messages.drain(..) {
            let from_business = message.from.is_some() && message.from == display_phone_number;
            let customer = if from_business { None } else { message.from.clone() };
            history.push(HistoryMessage { message, customer, from_business, status: None });
        }
    }
    let mut contact_syncs = Vec::new();
    for c in array("state_sync") {
        let wa_id =
            str_at(c, &["contact", "phone_number"]).map(|p| p.chars().filter(char::is_ascii_digit).collect::<String>());
        match (wa_id.filter(|w| !w.is_empty()), str_at(c, &["action"])) {
            (Some(wa_id), Some(action)) if str_at(c, &["type"]).is_none_or(|t| t == "contact") => {
                contact_syncs.push(ContactSync {
                    wa_id,
                    full_name: str_at(c, &["contact", "full_name"]).or_else(|| str_at(c, &["contact", "first_name"])),
                    action,
                    timestamp: unix_at(c, &["metadata", "timestamp"]),
                })
            }
            _ => rejected.push(Rejected { reason: "contact sync without a phone number or action", raw: c.clone() }),
        }
    }
    let mut statuses = Vec::new();
    for s in array("statuses") {
        match (str_at(s, &["id"]), str_at(s, &["status"])) {
            (Some(wamid), Some(status)) => statuses.push(parse_status(wamid, status, s)),
            _ => rejected.push(Rejected { reason: "status without an id (wamid) or status", raw: s.clone() }),
        }
    }
    Change {
        field,
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
        errors: array("errors").to_vec(),
        rejected,
        business_account_id: None,
        template_status: parse_template_status(change.get("field").and_then(Value::as_str), value),
    }
}

fn parse_group_event(group_id: String, kind: String, g: &Value) -> GroupEvent {
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
    GroupEvent {
        timestamp: unix_at(g, &["timestamp"]),
        subject: str_at(g, &["subject"]).or_else(|| setting("group_subject")),
        description: str_at(g, &["description"]).or_else(|| setting("group_description")),
        invite_link: str_at(g, &["invite_link"]),
        join_approval_mode: str_at(g, &["join_approval_mode"]),
        added: participants("added_participants"),
        removed: participants("removed_participants"),
        failed: g.get("errors").and_then(Value::as_array).is_some_and(|e| !e.is_empty()),
        raw: g.clone(),
        group_id,
        kind,
    }
}

fn parse_template_status(field: Option<&str>, value: &Value) -> Option<TemplateStatus> {
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

fn parse_message(wamid: String, m: &Value) -> Message {
    let kind = str_at(m, &["type"]).unwrap_or_else(|| "unknown".into());
    let text = match kind.as_str() {
        "text" => str_at(m, &["text", "body"]),
        "image" | "video" | "document" => str_at(m, &[&kind, "caption"]),
        "button" => str_at(m, &["button", "text"]),
        "interactive" => str_at(m, &["interactive", "button_reply", "title"])
            .or_else(|| str_at(m, &["interactive", "list_reply", "title"])),
        "order" => str_at(m, &["order", "text"]),
        "system" => str_at(m, &["system", "body"]),
        // The new version of an edited message: its text, or its caption.
        "edit" => str_at(m, &["edit", "message", "text", "body"]).or_else(|| {
            let inner = m.pointer("/edit/message")?;
            let kind = str_at(inner, &["type"])?;
            str_at(inner, &[&kind, "caption"])
        }),
        _ => None,
    };
    Message {
        wamid,
        from: str_at(m, &["from"]),
        from_user_id: str_at(m, &["from_user_id"]),
        group_id: str_at(m, &["group_id"]),
        timestamp: unix_at(m, &["timestamp"]),
        kind,
        text,
        raw: m.clone(),
    }
}

fn parse_status(wamid: String, status: String, s: &Value) -> Status {
    let error = s.get("errors").and_then(Value::as_array).and_then(|e| e.first());
    Status {
        wamid,
        status,
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
    }
}

/// A string at `path`; numbers are accepted too (ids are strings, but be liberal).
fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    let leaf = path.iter().try_fold(v, |v, k| v.get(k))?;
    match leaf {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer at `path`, as a string (`"1749416383"`, Meta's timestamps) or a number.
fn int_at(v: &Value, path: &[&str]) -> Option<i64> {
    str_at(v, path)?.parse().ok()
}

/// Unix seconds at `path` (Meta sends them as strings).
fn unix_at(v: &Value, path: &[&str]) -> Option<i64> {
    int_at(v, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Meta's text example (reference §1.7), verbatim.
    const TEXT: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234"}],"messages":[{"from":"16505551234","id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=","timestamp":"1749416383","type":"text","text":{"body":"Does it come in another color?"}}]},"field":"messages"}]}]}"#;

    #[test]
    fn only_a_challenge_of_metas_shape_is_echoed() {
        let q = |c: &str| format!("hub.mode=subscribe&hub.verify_token=t&hub.challenge={c}");
        assert_eq!(verify_subscription(&q("1158201444"), "t"), Ok("1158201444".into()));
        assert_eq!(verify_subscription(&q("abc-_.~XYZ"), "t"), Ok("abc-_.~XYZ".into()));
        assert_eq!(verify_subscription(&q("%3Cscript%3E"), "t"), Err(HandshakeError::BadChallenge));
        assert_eq!(verify_subscription(&q(&"9".repeat(65)), "t"), Err(HandshakeError::BadChallenge));
        assert_eq!(verify_subscription(&q(""), "t"), Err(HandshakeError::NoChallenge));
    }

    #[test]
    fn nul_characters_become_replacement_characters() {
        let body = TEXT.replace("Does it come", "Does\\u0000it come").replace("\"profile\"", "\"pro\\u0000file\"");
        let payload = parse(body.as_bytes()).unwrap();
        let m = &payload.changes[0].messages[0];
        assert_eq!(m.text.as_deref(), Some("Does\u{FFFD}it come in another color?"));
        assert!(!m.raw.to_string().contains("\\u0000"));
        assert!(!serde_json::to_string(&m.raw).unwrap().contains('\u{0}'));
    }

    /// A POST of three texts whose middle one's body is `middle` (a JSON string literal).
    fn three_texts(middle: &str) -> String {
        let text = |id: &str, body: &str| {
            format!(
                r#"{{"from":"16505551234","id":"{id}","timestamp":"1750263773","type":"text","text":{{"body":{body}}}}}"#
            )
        };
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"phone_number_id":"106540352242922"}},"messages":[{},{},{}]}},"field":"messages"}}]}}]}}"#,
            text("wamid.A", r#""first""#),
            text("wamid.B", middle),
            text("wamid.C", r#""third""#)
        )
    }

    #[test]
    fn a_lone_surrogate_costs_nothing_but_the_character() {
        let payload = parse(three_texts(r#""bad \uD800 half""#).as_bytes()).unwrap();
        let texts: Vec<_> = payload.changes[0].messages.iter().map(|m| m.text.clone().unwrap_or_default()).collect();
        assert_eq!(texts, ["first", "bad \u{FFFD} half", "third"]);
        assert!(payload.changes[0].rejected.is_empty());
    }

    #[test]
    fn a_message_nested_too_deep_is_refused_alone() {
        let deep = format!("{}\"x\"{}", "[".repeat(300), "]".repeat(300));
        let body = three_texts(r#""second""#)
            .replace(r#""text":{"body":"second"}"#, &format!(r#""text":{{"body":"second"}},"extra":{deep}"#));
        assert!(serde_json::from_str::<Value>(&body).is_err());
        let payload = parse(body.as_bytes()).unwrap();
        let c = &payload.changes[0];
        let ids: Vec<_> = c.messages.iter().map(|m| m.wamid.as_str()).collect();
        assert_eq!(ids, ["wamid.A", "wamid.C"]);
        assert_eq!(c.rejected.len(), 1);
        assert_eq!(c.rejected[0].raw["id"], "wamid.B");
    }

    // Meta's delivered status example (reference §1.5), and a per-message (PMP) one.
    const DELIVERED: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"statuses":[{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjVBOTE3MDk5QUVFM0YA","status":"delivered","timestamp":"1750263773","recipient_id":"16505551234","conversation":{"id":"6ceb9d929c9bdc4f90e967a32f8639b4","origin":{"type":"service"}},"pricing":{"billable":true,"pricing_model":"CBP","category":"service"}},{"id":"wamid.PMP","status":"sent","timestamp":"1750263770","recipient_id":"16505551234","pricing":{"pricing_model":"PMP","type":"free_customer_service","category":"utility"}},{"id":"wamid.NOPRICE","status":"read","timestamp":"1750263790","recipient_id":"16505551234"}]},"field":"messages"}]}]}"#;

    // A coexistence number's echo (users-2026 §3: value.message_echoes[] with from, to, id, type).
    const ECHO: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"message_echoes":[{"from":"15550783881","to":"16505551234","id":"wamid.ECHO1","timestamp":"1750263800","type":"text","text":{"body":"Sent from the app"}},{"from":"15550783881","to":"16505551234","type":"text"}]},"field":"smb_message_echoes"}]}]}"#;

    #[test]
    fn parses_message_echoes() {
        let p = parse(ECHO.as_bytes()).unwrap();
        let c = &p.changes[0];
        assert_eq!(c.field, "smb_message_echoes");
        assert_eq!(c.echoes.len(), 1);
        let e = &c.echoes[0];
        assert_eq!((e.message.wamid.as_str(), e.to.as_deref()), ("wamid.ECHO1", Some("16505551234")));
        assert_eq!((e.message.kind.as_str(), e.message.text.as_deref()), ("text", Some("Sent from the app")));
        assert_eq!(e.message.timestamp, Some(1750263800));
        assert_eq!(c.rejected.len(), 1, "the echo without an id is kept as rejected");
        assert!(c.messages.is_empty());
    }

    // users-2026 §3: value.user_id_update[] with wa_id, user_id / parent_user_id previous and current.
    const USER_ID_UPDATE: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"user_id_update":[{"wa_id":"16505551234","user_id":{"previous":"US.13491208655302741918","current":"US.99990000111122223333"},"parent_user_id":{"previous":"US.ENT.1","current":"US.ENT.2"},"timestamp":"1750263900"},{"wa_id":"16505551234","user_id":{"previous":"US.1"}}]},"field":"user_id_update"}]}]}"#;

    #[test]
    fn parses_user_id_updates() {
        let p = parse(USER_ID_UPDATE.as_bytes()).unwrap();
        let c = &p.changes[0];
        assert_eq!(
            c.user_id_updates,
            vec![UserIdUpdate {
                wa_id: Some("16505551234".into()),
                previous: Some("US.13491208655302741918".into()),
                current: "US.99990000111122223333".into(),
                parent_previous: Some("US.ENT.1".into()),
                parent_current: Some("US.ENT.2".into()),
            }]
        );
        assert_eq!(c.rejected.len(), 1, "an update without a current id is kept as rejected");
    }

    // users-2026 §3 (Calling API): a customer's call rings, then ends.
    const CALLS: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234"}],"calls":[{"id":"wacid.ABGGFjFVU2AfAgo6V","from":"16505551234","to":"15550783881","event":"connect","direction":"USER_INITIATED","timestamp":"1750263700"},{"id":"wacid.ABGGFjFVU2AfAgo6V","from":"16505551234","to":"15550783881","event":"terminate","direction":"USER_INITIATED","timestamp":"1750263800","status":"COMPLETED","start_time":"1750263705","end_time":"1750263800","duration":95}]},"field":"calls"}]}]}"#;

    #[test]
    fn parses_calls() {
        let p = parse(CALLS.as_bytes()).unwrap();
        let calls = &p.changes[0].calls;
        assert_eq!(calls.len(), 2);
        assert_eq!((calls[0].event.as_str(), calls[0].direction.as_deref()), ("connect", Some("USER_INITIATED")));
        let end = &calls[1];
        assert_eq!(end.call_id, "wacid.ABGGFjFVU2AfAgo6V");
        assert_eq!(
            (end.status.as_deref(), end.start_time, end.end_time, end.duration),
            (Some("COMPLETED"), Some(1750263705), Some(1750263800), Some(95))
        );
    }

    // Meta's group messages webhook reference (a participant writes in a group) and a group
    // message's aggregated read statuses (groups-messaging: one status object per participant).
    const GROUP_MESSAGE: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Tiago Mingo"},"wa_id":"16505551234"}],"messages":[{"from":"16505551234","group_id":"HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA","id":"wamid.GROUP1","timestamp":"1744344496","text":{"body":"What does everyone think about this?"},"type":"text"}],"statuses":[{"id":"wamid.OUT1","recipient_id":"HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA","recipient_type":"group","recipient_participant_id":"16505551234","status":"read","timestamp":"1744344500"},{"id":"wamid.OUT1","recipient_id":"HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA","recipient_type":"group","recipient_participant_id":"16505550000","status":"read","timestamp":"1744344501"}]},"field":"messages"}]}]}"#;

    #[test]
    fn parses_group_messages_and_their_per_participant_statuses() {
        let c = &parse(GROUP_MESSAGE.as_bytes()).unwrap().changes[0];
        let m = &c.messages[0];
        assert_eq!(m.group_id.as_deref(), Some("HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA"));
        assert_eq!(m.from.as_deref(), Some("16505551234"));
        assert_eq!(c.sender_of(m).and_then(|s| s.profile_name.as_deref()), Some("Tiago Mingo"));
        let participants: Vec<_> = c.statuses.iter().map(|s| s.participant_id.as_deref()).collect();
        assert_eq!(participants, [Some("16505551234"), Some("16505550000")]);
        assert!(c.statuses.iter().all(|s| s.recipient_type.as_deref() == Some("group")));
        let text = parse(TEXT.as_bytes()).unwrap();
        assert_eq!(text.changes[0].messages[0].group_id, None, "a 1:1 message has no group");
    }

    // Meta's "Webhooks for Groups API": one example of each field.
    const GROUP_EVENTS: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[
      {"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"groups":[{"timestamp":"1744344400","group_id":"G1","type":"group_create","request_id":"R1","subject":"Launch team","invite_link":"https://chat.whatsapp.com/LINK","join_approval_mode":"auto_approve"}]},"field":"group_lifecycle_update"},
      {"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"groups":[{"timestamp":"1744344401","group_id":"G1","type":"group_participants_add","reason":"invite_link","added_participants":[{"input":"+16505551234","wa_id":"16505551234"},{"wa_id":"16505550000"}]}]},"field":"group_participants_update"},
      {"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"groups":[{"timestamp":"1744344402","group_id":"G1","type":"group_participants_remove","initiated_by":"participant","removed_participants":[{"wa_id":"16505550000"}]}]},"field":"group_participants_update"},
      {"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"groups":[{"timestamp":"1744344403","group_id":"G1","type":"group_settings_update","request_id":"R2","profile_picture":{"mime_type":"image/jpeg","update_successful":true,"sha256":"H"},"group_subject":{"text":"Launch team v2","update_successful":true},"group_description":{"text":"not applied","update_successful":false}}]},"field":"group_settings_update"},
      {"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"groups":[{"timestamp":"1744344404","type":"group_suspend","group_id":"G1"},{"timestamp":"1744344405","type":"group_delete","group_id":"G2","request_id":"R3","errors":[{"code":131200,"message":"m","title":"t","error_data":{"details":"d"}}]},{"type":"group_suspend"}]},"field":"group_status_update"}]}]}"#;

    #[test]
    fn parses_every_group_webhook() {
        let p = parse(GROUP_EVENTS.as_bytes()).unwrap();
        let events: Vec<&GroupEvent> = p.changes.iter().flat_map(|c| &c.groups).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "group_create",
                "group_participants_add",
                "group_participants_remove",
                "group_settings_update",
                "group_suspend",
                "group_delete"
            ]
        );
        let create = events[0];
        assert_eq!(
            (create.subject.as_deref(), create.invite_link.as_deref(), create.join_approval_mode.as_deref()),
            (Some("Launch team"), Some("https://chat.whatsapp.com/LINK"), Some("auto_approve"))
        );
        assert_eq!((create.timestamp, create.failed), (Some(1744344400), false));
        assert_eq!(events[1].added, ["16505551234", "16505550000"]);
        assert_eq!(events[2].removed, ["16505550000"]);
        assert_eq!(events[3].subject.as_deref(), Some("Launch team v2"));
        assert_eq!(events[3].description, None, "a setting that failed to change is not taken");
        assert!(events[5].failed);
        assert_eq!(p.changes[4].rejected.len(), 1, "a group event without a group id is reported");
    }

    // Meta's history webhook reference: a chunk with two threads (a media placeholder among
    // them), the media that follows, and a business that declined to share its history.
    const HISTORY: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"history":[{"metadata":{"phase":0,"chunk_order":1,"progress":55},"threads":[{"id":"16505551234","messages":[{"from":"15550783881","id":"wamid.H1","timestamp":"1739230955","type":"text","text":{"body":"Here's the info you requested!"},"history_context":{"status":"READ"}},{"from":"15550783881","id":"wamid.H2","timestamp":"1739230970","type":"media_placeholder","history_context":{"status":"PLAYED"}},{"from":"16505551234","id":"wamid.H3","timestamp":"1739230971","type":"text","text":{"body":"Thanks!"},"history_context":{"status":"READ"}}]},{"id":"12125557890","messages":[{"from":"15550783881","id":"wamid.H4","timestamp":"1739230972","type":"text","text":{"body":"Thanks for your order!"},"history_context":{"status":"DELIVERED"}},{"from":"15550783881","type":"text"}]}]}]},"field":"history"},
      {"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"messages":[{"from":"15550783881","id":"wamid.H2","timestamp":"1738796547","type":"image","image":{"caption":"Black Prince echeveria","mime_type":"image/jpeg","sha256":"3f9d","id":"24230790383178626"}}]},"field":"history"},
      {"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"history":[{"errors":[{"code":2593109,"title":"History sync is turned off by the business from the WhatsApp Business App","message":"History sync is turned off by the business from the WhatsApp Business App","error_data":{"details":"History sharing is turned off by the business"}}]}]},"field":"history"}]}]}"#;

    #[test]
    fn parses_history_chunks_their_media_and_a_refusal() {
        let p = parse(HISTORY.as_bytes()).unwrap();
        let chunk = &p.changes[0];
        assert!(chunk.messages.is_empty(), "history is not live traffic");
        let h: Vec<(&str, Option<&str>, bool, Option<&str>)> = chunk
            .history
            .iter()
            .map(|m| (m.message.wamid.as_str(), m.customer.as_deref(), m.from_business, m.status.as_deref()))
            .collect();
        assert_eq!(
            h,
            [
                ("wamid.H1", Some("16505551234"), true, Some("read")),
                ("wamid.H2", Some("16505551234"), true, Some("played")),
                ("wamid.H3", Some("16505551234"), false, Some("read")),
                ("wamid.H4", Some("12125557890"), true, Some("delivered")),
            ]
        );
        assert_eq!(chunk.history[1].message.kind, "media_placeholder");
        assert_eq!(chunk.rejected.len(), 1, "a history message without an id is reported");
        assert_eq!(
            chunk.history_chunks,
            [HistoryChunk {
                phase: Some(0),
                chunk_order: Some(1),
                progress: Some(55),
                messages: 4,
                error_code: None,
                error: None
            }]
        );
        let media = &p.changes[1];
        assert!(media.messages.is_empty());
        let m = &media.history[0];
        assert_eq!((m.message.wamid.as_str(), m.message.kind.as_str(), m.from_business), ("wamid.H2", "image", true));
        assert_eq!(m.message.text.as_deref(), Some("Black Prince echeveria"));
        let declined = &p.changes[2].history_chunks[0];
        assert_eq!((declined.error_code, declined.messages), (Some(2593109), 0));
        assert!(declined.error.as_deref().unwrap().contains("turned off"));
    }

    // 360dialog's and Meta's smb_app_state_sync: contacts the business saved in the app.
    const STATE_SYNC: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"state_sync":[{"type":"contact","contact":{"full_name":"Sheena Nelson","first_name":"Sheena","phone_number":"+1 650-555-1234"},"action":"add","metadata":{"timestamp":"1739230955"}},{"type":"contact","contact":{"phone_number":"12125557890"},"action":"remove","metadata":{"timestamp":"1739230956"}},{"type":"contact","contact":{"full_name":"No number"},"action":"add"}]},"field":"smb_app_state_sync"}]}]}"#;

    #[test]
    fn parses_contact_syncs() {
        let c = &parse(STATE_SYNC.as_bytes()).unwrap().changes[0];
        assert_eq!(
            c.contact_syncs,
            [
                ContactSync {
                    wa_id: "16505551234".into(),
                    full_name: Some("Sheena Nelson".into()),
                    action: "add".into(),
                    timestamp: Some(1739230955)
                },
                ContactSync {
                    wa_id: "12125557890".into(),
                    full_name: None,
                    action: "remove".into(),
                    timestamp: Some(1739230956)
                },
            ]
        );
        assert_eq!(c.rejected.len(), 1);
    }

    #[test]
    fn parses_the_pricing_of_statuses() {
        let p = parse(DELIVERED.as_bytes()).unwrap();
        let s = &p.changes[0].statuses;
        let cbp =
            Pricing { model: Some("CBP".into()), kind: None, category: Some("service".into()), billable: Some(true) };
        assert_eq!(s[0].pricing.as_ref(), Some(&cbp));
        let pmp = Pricing {
            model: Some("PMP".into()),
            kind: Some("free_customer_service".into()),
            category: Some("utility".into()),
            billable: None,
        };
        assert_eq!(s[1].pricing.as_ref(), Some(&pmp));
        assert_eq!(s[2].pricing, None);
    }

    #[test]
    fn parses_metas_text_example() {
        let p = parse(TEXT.as_bytes()).unwrap();
        assert_eq!(p.changes.len(), 1);
        let c = &p.changes[0];
        assert_eq!(c.field, "messages");
        assert_eq!(c.phone_number_id.as_deref(), Some("106540352242922"));
        let m = &c.messages[0];
        assert_eq!(m.wamid, "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=");
        assert_eq!(m.kind, "text");
        assert_eq!(m.text.as_deref(), Some("Does it come in another color?"));
        assert_eq!(m.timestamp, Some(1749416383));
        let sender = c.sender_of(m).unwrap();
        assert_eq!(sender.profile_name.as_deref(), Some("Sheena Nelson"));
        assert_eq!(sender.wa_id.as_deref(), Some("16505551234"));
    }

    #[test]
    fn walks_every_entry_change_and_item() {
        let body = r#"{"entry":[
          {"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"1"},
             "messages":[{"id":"a","type":"text","text":{"body":"x"}},{"id":"b","type":"image","image":{"id":"9","caption":"cap"}}]}}]},
          {"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"2"},
             "statuses":[{"id":"w1","status":"delivered","timestamp":"5"},{"id":"w2","status":"failed","errors":[{"code":131030,"title":"Recipient phone number not in allowed list","error_data":{"details":"not whitelisted"}}]}]}},
             {"field":"account_alerts","value":{"anything":true}}]}]}"#;
        let p = parse(body.as_bytes()).unwrap();
        assert_eq!(p.changes.len(), 3);
        assert_eq!(p.message_count(), 2);
        assert_eq!(p.status_count(), 2);
        assert_eq!(p.changes[0].messages[1].text.as_deref(), Some("cap"));
        let failed = &p.changes[1].statuses[1];
        assert_eq!((failed.error_code, failed.error_details.as_deref()), (Some(131030), Some("not whitelisted")));
        assert_eq!(p.changes[2].field, "account_alerts");
    }

    #[test]
    fn keeps_unknown_types_and_reports_items_without_ids() {
        let body = r#"{"entry":[{"changes":[{"field":"messages","value":{"messages":[
            {"id":"u","type":"poll_creation_v9","poll":{}},{"type":"text","text":{"body":"no id"}}],
            "statuses":[{"status":"read"}]}}]}]}"#;
        let c = &parse(body.as_bytes()).unwrap().changes[0];
        assert_eq!(c.messages.len(), 1);
        assert_eq!(c.messages[0].kind, "poll_creation_v9");
        assert_eq!(c.messages[0].from, None);
        assert_eq!(c.rejected.len(), 2);
    }

    #[test]
    fn reads_the_text_an_agent_sees_for_each_kind() {
        let text_of = |m: &str| {
            let body = format!(r#"{{"entry":[{{"changes":[{{"field":"messages","value":{{"messages":[{m}]}}}}]}}]}}"#);
            parse(body.as_bytes()).unwrap().changes[0].messages[0].text.clone()
        };
        assert_eq!(
            text_of(r#"{"id":"1","type":"document","document":{"caption":"invoice","filename":"a.pdf"}}"#).as_deref(),
            Some("invoice")
        );
        assert_eq!(text_of(r#"{"id":"1","type":"interactive","interactive":{"type":"list_reply","list_reply":{"id":"r","title":"Row"}}}"#).as_deref(), Some("Row"));
        assert_eq!(
            text_of(r#"{"id":"1","type":"button","button":{"payload":"P","text":"Yes"}}"#).as_deref(),
            Some("Yes")
        );
        assert_eq!(
            text_of(r#"{"id":"1","type":"system","system":{"body":"changed","type":"user_changed_number"}}"#)
                .as_deref(),
            Some("changed")
        );
        assert_eq!(text_of(r#"{"id":"1","type":"edit","edit":{"original_message_id":"o","message":{"type":"text","text":{"body":"new"}}}}"#).as_deref(), Some("new"));
        assert_eq!(
            text_of(r#"{"id":"1","type":"edit","edit":{"message":{"type":"image","image":{"caption":"c"}}}}"#)
                .as_deref(),
            Some("c")
        );
        assert_eq!(text_of(r#"{"id":"1","type":"reaction","reaction":{"message_id":"m"}}"#), None);
    }

    #[test]
    fn reads_template_status_updates() {
        let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","time":1,"changes":[{"field":"message_template_status_update",
            "value":{"event":"REJECTED","message_template_id":594425479261596,"message_template_name":"order_update","message_template_language":"en_US","reason":"INCORRECT_CATEGORY"}}]}]}"#;
        let c = &parse(body.as_bytes()).unwrap().changes[0];
        assert_eq!(c.business_account_id.as_deref(), Some("102290129340398"));
        let t = c.template_status.as_ref().unwrap();
        assert_eq!((t.status.as_str(), t.name.as_str(), t.language.as_str()), ("REJECTED", "order_update", "en_US"));
        assert_eq!(
            (t.template_id.as_deref(), t.reason.as_deref()),
            (Some("594425479261596"), Some("INCORRECT_CATEGORY"))
        );
    }

    #[test]
    fn refuses_what_is_not_a_webhook() {
        assert!(parse(b"not json").unwrap_err().0.contains("not JSON"));
        assert!(parse(b"{\"object\":\"page\"}").unwrap_err().0.contains("entry"));
    }

    #[test]
    fn handshake_echoes_the_challenge_only_for_the_right_token() {
        let q = "hub.mode=subscribe&hub.verify_token=my%20token%2B1&hub.challenge=1158201444";
        assert_eq!(verify_subscription(q, "my token+1").as_deref(), Ok("1158201444"));
        assert_eq!(verify_subscription(q, "other"), Err(HandshakeError::TokenMismatch));
        assert_eq!(
            verify_subscription("hub.mode=unsubscribe&hub.verify_token=t&hub.challenge=c", "t"),
            Err(HandshakeError::NotSubscribe)
        );
        assert_eq!(verify_subscription("hub.mode=subscribe&hub.verify_token=t", "t"), Err(HandshakeError::NoChallenge));
        assert_eq!(verify_subscription("hub.mode=subscribe&hub.challenge=c", "t"), Err(HandshakeError::TokenMismatch));
        // A malformed escape stays as it is, and '%' is not in a challenge Meta sends.
        assert_eq!(
            verify_subscription("hub.mode=subscribe&hub.verify_token=t&hub.challenge=a%zzb", "t"),
            Err(HandshakeError::BadChallenge)
        );
    }
}
