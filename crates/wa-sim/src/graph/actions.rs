//! The Graph API calls that are not messages, as Meta answers them: the Block Users API
//! (`POST`/`DELETE /{phone_number_id}/block_users`, answered per user), the Calling API's call
//! actions (`POST /{phone_number_id}/calls`) and template creation and deletion
//! (`POST`/`DELETE /{waba_id}/message_templates`). Each checks the request's shape as Meta does
//! and answers Meta's error objects; a test scripts a failure with `fail_next` keyed by the
//! user, the call id or the template name.

use super::Fault;
use super::sends::meta_error;
use super::state::State;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

type Answer = (u16, Option<Value>, Option<String>);

/// The answer to an action, or `None` when the request is not one.
pub(super) fn answer(
    state: &State,
    method: &str,
    path: &str,
    query: &str,
    authorization: Option<&str>,
    body: &str,
) -> Option<Answer> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let [_version, owner, endpoint @ ("block_users" | "calls" | "message_templates")] = parts.as_slice() else {
        return None;
    };
    if *endpoint == "message_templates" && method == "GET" {
        return None; // the template list (media.rs)
    }
    if state.unreachable.load(Ordering::Relaxed) {
        return Some((0, None, None));
    }
    let expected = state.tokens.lock().unwrap().get(*owner).cloned();
    let presented = authorization.and_then(|a| a.strip_prefix("Bearer ")).filter(|t| !t.is_empty());
    if presented.is_none() || expected.as_deref().is_some_and(|t| Some(t) != presented) {
        return Some(meta_error(401, 190, "Invalid OAuth access token - Cannot parse access token"));
    }
    let json = if body.trim().is_empty() {
        Value::Null
    } else {
        match serde_json::from_str::<Value>(body) {
            Ok(j) => j,
            Err(_) => return Some(meta_error(400, 100, "(#100) The request body is not JSON")),
        }
    };
    Some(match (method, *endpoint) {
        ("POST" | "DELETE", "block_users") => block_users(state, method == "POST", &json),
        ("POST", "calls") => call(state, &json),
        ("POST", "message_templates") => create_template(state, owner, &json),
        ("DELETE", "message_templates") => delete_template(state, owner, query),
        _ => meta_error(400, 100, "(#100) Unsupported method"),
    })
}

fn scripted(state: &State, key: &str) -> Option<Fault> {
    state.faults.lock().unwrap().get_mut(key).and_then(VecDeque::pop_front)
}

/// A scripted fault as the whole answer (`None`: no fault, or one that only errs).
fn fault_answer(fault: Fault) -> Answer {
    match fault {
        Fault::Error { http_status, code, message } => meta_error(http_status, code, &message),
        Fault::Drop | Fault::AcceptAs(_) => (0, None, None),
        Fault::Timeout(d) => {
            std::thread::sleep(d);
            (0, None, None)
        }
    }
}

/// Block or unblock: each user succeeds or fails on its own; if any failed, the answer is
/// 400 with 139100 and both lists (Meta's "errors are returned per number").
fn block_users(state: &State, block: bool, json: &Value) -> Answer {
    if json["messaging_product"] != "whatsapp" {
        return meta_error(400, 100, "(#100) The parameter messaging_product is required.");
    }
    let Some(users) = json["block_users"].as_array().filter(|u| !u.is_empty()) else {
        return meta_error(400, 100, "(#100) The parameter block_users is required.");
    };
    if users.len() > 1000 {
        return meta_error(400, 100, "(#100) block_users may name at most 1000 users");
    }
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    for u in users {
        let Some(user) = u["user"].as_str() else {
            return meta_error(400, 100, "(#100) Each item of block_users needs a user.");
        };
        let wa_id = user.trim_start_matches('+');
        match scripted(state, user) {
            Some(Fault::Error { code, message, .. }) => failed.push(json!({
                "input": user, "wa_id": wa_id,
                "errors": [{ "message": message, "code": code, "error_data": { "details": message } }]
            })),
            Some(other) => return fault_answer(other),
            None => done.push(json!({ "input": user, "wa_id": wa_id })),
        }
    }
    let list = if block { "added_users" } else { "removed_users" };
    let mut answer = json!({ "messaging_product": "whatsapp", "block_users": { list: done } });
    if failed.is_empty() {
        return (200, Some(answer), None);
    }
    answer["block_users"]["failed_users"] = Value::Array(failed);
    answer["error"] = json!({
        "message": "(#139100) Failed to block/unblock users", "type": "OAuthException", "code": 139100,
        "error_data": { "details": "Failed to block/unblock some users." }, "fbtrace_id": "AwsSimTrace"
    });
    (400, Some(answer), None)
}

/// A call action: pre_accept and accept carry the SDP answer, reject and terminate none.
fn call(state: &State, json: &Value) -> Answer {
    if json["messaging_product"] != "whatsapp" {
        return meta_error(400, 100, "(#100) The parameter messaging_product is required.");
    }
    let Some(call_id) = json["call_id"].as_str().filter(|c| c.starts_with("wacid.")) else {
        return meta_error(400, 100, "(#100) The parameter call_id is required.");
    };
    let action = json["action"].as_str().unwrap_or_default();
    let needs_sdp = match action {
        "pre_accept" | "accept" => true,
        "reject" | "terminate" => false,
        _ => {
            return meta_error(
                400,
                100,
                "(#100) Param action must be one of {connect, pre_accept, accept, reject, terminate}",
            );
        }
    };
    let session_ok =
        json["session"]["sdp_type"] == "answer" && json["session"]["sdp"].as_str().is_some_and(|s| !s.is_empty());
    if needs_sdp && !session_ok {
        return meta_error(400, 100, "(#100) The parameter session with sdp_type answer and sdp is required.");
    }
    if let Some(fault) = scripted(state, call_id) {
        return fault_answer(fault);
    }
    (200, Some(json!({ "messaging_product": "whatsapp", "success": true })), None)
}

/// A template submitted for review: PENDING, and listed by the account from now on.
fn create_template(state: &State, waba_id: &str, json: &Value) -> Answer {
    let name = json["name"].as_str().unwrap_or_default();
    let language = json["language"].as_str().unwrap_or_default();
    let category = json["category"].as_str().unwrap_or_default();
    if name.is_empty() || language.is_empty() {
        return meta_error(400, 100, "(#100) The parameters name and language are required.");
    }
    if !["MARKETING", "UTILITY", "AUTHENTICATION"].contains(&category) {
        return meta_error(400, 100, "(#100) Param category must be one of {MARKETING, UTILITY, AUTHENTICATION}");
    }
    if json["components"].as_array().is_none_or(|c| c.is_empty()) {
        return meta_error(400, 100, "(#100) The parameter components is required.");
    }
    if let Some(fault) = scripted(state, name) {
        return fault_answer(fault);
    }
    let mut templates = state.templates.lock().unwrap();
    let list = templates.entry(waba_id.to_string()).or_insert_with(|| json!([]));
    let list = list.as_array_mut().expect("templates are an array");
    if list.iter().any(|t| t["name"] == name && t["language"] == language) {
        return meta_error(400, 100, "(#100) Content in this language already exists for this template name.");
    }
    let id = format!("{}", 3_000_000_000_000_000u64 + state.next_id.fetch_add(1, Ordering::Relaxed));
    list.push(json!({ "id": id, "name": name, "language": language, "status": "PENDING", "category": category,
                      "components": json["components"] }));
    (200, Some(json!({ "id": id, "status": "PENDING", "category": category })), None)
}

/// A template deleted by name: every language of it.
fn delete_template(state: &State, waba_id: &str, query: &str) -> Answer {
    let Some(name) = query.split('&').find_map(|kv| kv.strip_prefix("name=")).filter(|n| !n.is_empty()) else {
        return meta_error(400, 100, "(#100) The parameter name is required.");
    };
    if let Some(fault) = scripted(state, name) {
        return fault_answer(fault);
    }
    let mut templates = state.templates.lock().unwrap();
    let list = templates.get_mut(waba_id).and_then(Value::as_array_mut);
    let Some(list) = list.filter(|l| l.iter().any(|t| t["name"] == name)) else {
        return meta_error(400, 100, &format!("(#100) Message template \"{name}\" not found"));
    };
    list.retain(|t| t["name"] != name);
    (200, Some(json!({ "success": true })), None)
}
