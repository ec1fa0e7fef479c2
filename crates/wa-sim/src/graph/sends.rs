//! The send endpoints, `/messages` and `/marketing_messages`: each send checked as Meta checks
//! it, then accepted with a fresh wamid or answered with Meta's error (or a scripted fault).

use super::Fault;
use super::state::State;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

/// Message types a group send may have; Meta refuses the others (interactive, location, ...).
const GROUP_TYPES: &[&str] = &["text", "image", "video", "audio", "document", "sticker", "template"];

pub(super) fn meta_error(http_status: u16, code: i64, message: &str) -> (u16, Option<Value>, Option<String>) {
    let error = json!({ "error": {
        "message": message, "type": "OAuthException", "code": code,
        "error_data": { "messaging_product": "whatsapp", "details": message },
        "fbtrace_id": "AwsSimTrace"
    }});
    (http_status, Some(error), None)
}

pub(super) fn answer(
    state: &State,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> (u16, Option<Value>, Option<String>) {
    if state.unreachable.load(Ordering::Relaxed) {
        return (0, None, None); // the connection closes: no answer
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let [version, phone_number_id, endpoint @ ("messages" | "marketing_messages")] = parts.as_slice() else {
        return meta_error(400, 2500, "Unknown path components");
    };
    let marketing = *endpoint == "marketing_messages";
    if method != "POST" {
        return meta_error(400, 100, "Unsupported method");
    }
    let valid_version = version
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(a, b)| a.parse::<u32>().is_ok_and(|major| major >= 21) && b.parse::<u32>().is_ok());
    if !valid_version {
        return meta_error(
            400,
            2635,
            &format!("(#2635) You are calling a deprecated or unknown version of the Graph API ({version})"),
        );
    }
    if state.refuses_token(phone_number_id, authorization.and_then(|a| a.strip_prefix("Bearer "))) {
        return meta_error(401, 190, "Invalid OAuth access token - Cannot parse access token");
    }
    let Ok(json) = serde_json::from_str::<Value>(body) else {
        return meta_error(400, 100, "(#100) The request body is not JSON");
    };
    if json["messaging_product"] != "whatsapp" {
        return meta_error(400, 100, "(#100) The parameter messaging_product is required.");
    }
    // The Marketing Messages API sends marketing templates and nothing else (no read receipts).
    if marketing && json["type"] != "template" {
        return meta_error(400, 100, "(#100) Marketing messages must be templates");
    }
    // A read receipt (optionally with a typing indicator) is answered {"success": true}.
    if json["status"] == "read" {
        return match json["message_id"].as_str() {
            Some(_) => (200, Some(json!({ "success": true })), None),
            None => meta_error(400, 100, "(#100) The parameter message_id is required."),
        };
    }
    let to = json["to"].as_str().or(json["recipient"].as_str()).unwrap_or_default().to_string();
    let kind = json["type"].as_str().unwrap_or_default();
    if to.is_empty() || kind.is_empty() || json.get(kind).is_none() {
        return meta_error(400, 100, "(#100) Invalid parameter: to, type and the type's object are required");
    }
    let group = is_group_send(&json);
    if group && !GROUP_TYPES.contains(&kind) {
        return meta_error(
            400,
            131009,
            "(#131009) Parameter value is not valid: this message type is not supported in groups",
        );
    }
    if let Some(problem) = context_problem(&json, kind).or_else(|| contacts_problem(&json, kind)) {
        return meta_error(400, problem.0, problem.1);
    }
    let shape = if group {
        Shape::Group
    } else if marketing {
        Shape::Marketing
    } else {
        Shape::Direct
    };
    let scripted = state.faults.lock().unwrap().get_mut(&to).and_then(VecDeque::pop_front);
    let random = || {
        let roll = state.options.fault_share > 0.0 && chance(state) < state.options.fault_share;
        if roll { state.options.fault.clone() } else { None }
    };
    if let Some(fault) = scripted.or_else(random) {
        return match fault {
            Fault::Error { http_status, code, message } => meta_error(http_status, code, &message),
            Fault::Drop => (0, None, None),
            Fault::Timeout(d) => {
                std::thread::sleep(d);
                (0, None, None)
            }
            Fault::AcceptAs(wamid) => accepted(&to, wamid, shape),
        };
    }
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    accepted(&to, format!("wamid.SIM{phone_number_id}x{}x{n:010}", state.run_id), shape)
}

/// Meta's refusal of a `context` (a quoted message) it does not take: one that is not an object
/// with a `message_id`, or one on a reaction (which names its message itself).
fn context_problem(json: &Value, kind: &str) -> Option<(i64, &'static str)> {
    let context = json.get("context")?;
    if kind == "reaction" {
        return Some((
            131009,
            "(#131009) Parameter value is not valid: context is not supported for reaction messages",
        ));
    }
    match context.get("message_id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => None,
        _ => Some((131008, "(#131008) Required parameter is missing: context.message_id")),
    }
}

/// Meta's refusal of a contacts message it cannot show: not a list of 1 to 257 contact
/// objects, or a contact whose name lacks `formatted_name` or has nothing else.
fn contacts_problem(json: &Value, kind: &str) -> Option<(i64, &'static str)> {
    if kind != "contacts" {
        return None;
    }
    let Some(cards) = json["contacts"].as_array().filter(|c| (1..=257).contains(&c.len())) else {
        return Some((
            131009,
            "(#131009) Parameter value is not valid: contacts must be an array of 1 to 257 contacts",
        ));
    };
    for card in cards {
        let name = &card["name"];
        let has = |field: &str| name[field].as_str().is_some_and(|v| !v.trim().is_empty());
        if !has("formatted_name") {
            return Some((131008, "(#131008) Required parameter is missing: contacts[].name.formatted_name"));
        }
        if !["first_name", "last_name", "middle_name", "suffix", "prefix"].iter().any(|f| has(f)) {
            return Some((
                131008,
                "(#131008) Required parameter is missing: contacts[].name needs at least one of first_name, last_name, middle_name, suffix, prefix",
            ));
        }
    }
    None
}

/// A send to a group (`recipient_type: group`, `to` its id) rather than to one customer.
pub(super) fn is_group_send(json: &Value) -> bool {
    json["recipient_type"] == "group"
}

/// How Meta's acceptance of a send looks, which depends on what was sent.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// To one customer on `/messages`: `contacts[].wa_id` is `to` without its '+'.
    Direct,
    /// On `/marketing_messages`: the message also says it was `accepted`.
    Marketing,
    /// To a group: the group id stands as the contact, and the message names its group.
    Group,
}

fn accepted(to: &str, wamid: String, shape: Shape) -> (u16, Option<Value>, Option<String>) {
    let (wa_id, message) = match shape {
        Shape::Direct => (to.trim_start_matches('+'), json!({ "id": wamid })),
        Shape::Marketing => (to.trim_start_matches('+'), json!({ "id": wamid, "message_status": "accepted" })),
        Shape::Group => (to, json!({ "id": wamid, "group_id": to })),
    };
    let answer = json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": to, "wa_id": wa_id }],
        "messages": [message]
    });
    (200, Some(answer), Some(wamid))
}

/// A number in [0, 1) from a per-simulator xorshift sequence (no external randomness needed).
fn chance(state: &State) -> f64 {
    let mut x = state.next_id.fetch_add(0x9E37_79B9, Ordering::Relaxed) ^ 0x2545_F491_4F6C_DD1D;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x >> 11) as f64 / (1u64 << 53) as f64
}
