//! The Graph API calls that are not messages, as Meta answers them: the Block Users API
//! (`POST`/`DELETE /{phone_number_id}/block_users`, answered per user), the Calling API's call
//! actions (`POST /{phone_number_id}/calls`) and template creation and deletion
//! (`POST`/`DELETE /{waba_id}/message_templates`), and the Groups API's management calls
//! (`POST /{phone_number_id}/groups`; `/{group_id}/invite_link`, `/join_requests`,
//! `/participants`). Each checks the request's shape as Meta does and answers Meta's error
//! objects; a test scripts a failure with `fail_next` keyed by the user, the call id, the
//! template name, the group's subject (a creation) or the group id.

use super::Fault;
use super::sends::meta_error;
use super::state::{Group, State};
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
    let [
        _version,
        owner,
        endpoint @ ("block_users" | "calls" | "message_templates" | "groups" | "invite_link" | "join_requests"
        | "participants"),
    ] = parts.as_slice()
    else {
        return None;
    };
    if *endpoint == "message_templates" && method == "GET" {
        return None; // the template list (media.rs)
    }
    if state.unreachable.load(Ordering::Relaxed) {
        return Some((0, None, None));
    }
    let presented = authorization.and_then(|a| a.strip_prefix("Bearer ")).filter(|t| !t.is_empty());
    if state.refuses_token(owner, presented) {
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
        ("POST", "groups") => create_group(state, &json),
        ("GET" | "POST", "invite_link") => invite_link(state, method, owner, &json),
        ("GET", "join_requests") => list_join_requests(state, owner),
        ("POST" | "DELETE", "join_requests") => decide_join_requests(state, owner, method == "POST", &json),
        ("DELETE", "participants") => remove_participants(state, owner, &json),
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

/// Graph's answer for a node it does not have (a group id it does not know).
fn unknown_group(method: &str, group_id: &str) -> Answer {
    meta_error(
        400,
        100,
        &format!(
            "(#100) Unsupported {} request. Object with ID '{group_id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation",
            method.to_ascii_lowercase()
        ),
    )
}

fn needs_messaging_product(json: &Value) -> Option<Answer> {
    (json["messaging_product"] != "whatsapp")
        .then(|| meta_error(400, 100, "(#100) The parameter messaging_product is required."))
}

/// A group's creation: Meta answers a request id at once and creates the group after, telling
/// its id and invite link with the `group_create` webhook, which carries the same request id.
fn create_group(state: &State, json: &Value) -> Answer {
    if let Some(refused) = needs_messaging_product(json) {
        return refused;
    }
    let subject = json["subject"].as_str().map(str::trim).unwrap_or_default();
    if subject.is_empty() {
        return meta_error(400, 100, "(#100) The parameter subject is required.");
    }
    if subject.chars().count() > 128 {
        return meta_error(400, 100, "(#100) Param subject must be at most 128 characters long.");
    }
    match &json["description"] {
        Value::Null => {}
        Value::String(d) if d.chars().count() <= 2048 => {}
        _ => return meta_error(400, 100, "(#100) Param description must be a string of at most 2048 characters."),
    }
    match json.get("join_approval_mode") {
        None => {}
        Some(m) if m == "auto_approve" || m == "approval_required" => {}
        Some(_) => {
            return meta_error(
                400,
                100,
                "(#100) Param join_approval_mode must be one of {auto_approve, approval_required}",
            );
        }
    }
    if let Some(fault) = scripted(state, subject) {
        return fault_answer(fault);
    }
    let group_id = format!("Y2FwaV9ncm91cDo{}ZD", 100_000_000_000u64 + state.next_id.fetch_add(1, Ordering::Relaxed));
    let request_id = crate::payloads::group_request_id(&group_id);
    state.groups.lock().unwrap().insert(group_id.clone(), Group::new(&group_id));
    state.group_requests.lock().unwrap().insert(request_id.clone(), group_id);
    (200, Some(json!({ "messaging_product": "whatsapp", "request_id": request_id })), None)
}

/// The group's invite link (`GET`), or a new one (`POST`: the old one stops working).
fn invite_link(state: &State, method: &str, group_id: &str, json: &Value) -> Answer {
    if method == "POST"
        && let Some(refused) = needs_messaging_product(json)
    {
        return refused;
    }
    if let Some(fault) = scripted(state, group_id) {
        return fault_answer(fault);
    }
    let mut groups = state.groups.lock().unwrap();
    let Some(group) = groups.get_mut(group_id) else { return unknown_group(method, group_id) };
    if method == "POST" {
        group.resets += 1;
        group.invite_link = format!("{}R{}", crate::payloads::group_invite_link(group_id), group.resets);
    }
    (200, Some(json!({ "messaging_product": "whatsapp", "invite_link": group.invite_link })), None)
}

/// The group's open join requests, in one page.
fn list_join_requests(state: &State, group_id: &str) -> Answer {
    if let Some(fault) = scripted(state, group_id) {
        return fault_answer(fault);
    }
    let groups = state.groups.lock().unwrap();
    let Some(group) = groups.get(group_id) else { return unknown_group("GET", group_id) };
    let data: Vec<Value> = group
        .join_requests
        .iter()
        .map(|(id, wa_id, at)| json!({ "join_request_id": id, "wa_id": wa_id, "creation_timestamp": at }))
        .collect();
    (200, Some(json!({ "data": data, "paging": { "cursors": { "before": "QVFIUjBF", "after": "QVFIUjFF" } } })), None)
}

/// Approves (`POST`) or rejects (`DELETE`) join requests, each on its own: one the group has
/// not (or no longer) is listed in `failed_join_requests` with its error; an approved one's
/// customer joins the group.
fn decide_join_requests(state: &State, group_id: &str, approve: bool, json: &Value) -> Answer {
    if let Some(refused) = needs_messaging_product(json) {
        return refused;
    }
    let Some(ids) = json["join_requests"].as_array().filter(|i| !i.is_empty()) else {
        return meta_error(400, 100, "(#100) The parameter join_requests is required.");
    };
    let Some(ids) = ids.iter().map(Value::as_str).collect::<Option<Vec<&str>>>() else {
        return meta_error(400, 100, "(#100) Param join_requests must be an array of strings.");
    };
    if let Some(fault) = scripted(state, group_id) {
        return fault_answer(fault);
    }
    let mut groups = state.groups.lock().unwrap();
    let method = if approve { "POST" } else { "DELETE" };
    let Some(group) = groups.get_mut(group_id) else { return unknown_group(method, group_id) };
    let (mut decided, mut failed) = (Vec::new(), Vec::new());
    for id in ids {
        match group.join_requests.iter().position(|(j, ..)| j == id) {
            Some(i) => {
                let (_, wa_id, _) = group.join_requests.remove(i);
                if approve {
                    state.group_participants.lock().unwrap().entry(group_id.to_string()).or_default().push(wa_id);
                }
                decided.push(json!(id));
            }
            None => failed.push(json!({ "join_request_id": id, "errors": [{
                "code": 131203, "title": "Join request not found",
                "message": "(#131203) Join request not found",
                "error_data": { "details": format!("There is no open join request {id} in this group.") }
            }] })),
        }
    }
    let list = if approve { "approved_join_requests" } else { "rejected_join_requests" };
    let mut answer = json!({ "messaging_product": "whatsapp", list: decided });
    if !failed.is_empty() {
        answer["failed_join_requests"] = Value::Array(failed);
    }
    (200, Some(answer), None)
}

/// Removes participants (at most 8, a group's most): every one must be in the group.
fn remove_participants(state: &State, group_id: &str, json: &Value) -> Answer {
    if let Some(refused) = needs_messaging_product(json) {
        return refused;
    }
    let Some(list) = json["participants"].as_array().filter(|p| !p.is_empty()) else {
        return meta_error(400, 100, "(#100) The parameter participants is required.");
    };
    if list.len() > 8 {
        return meta_error(400, 131204, "(#131204) Too many participants");
    }
    let users: Option<Vec<String>> = list
        .iter()
        .map(|p| p["user"].as_str().or(p["user_id"].as_str()).map(|u| u.trim_start_matches('+').to_string()))
        .collect();
    let Some(users) = users else {
        return meta_error(400, 100, "(#100) Each item of participants needs a user or a user_id.");
    };
    if let Some(fault) = scripted(state, group_id) {
        return fault_answer(fault);
    }
    if !state.groups.lock().unwrap().contains_key(group_id) {
        return unknown_group("DELETE", group_id);
    }
    let mut participants = state.group_participants.lock().unwrap();
    let members = participants.entry(group_id.to_string()).or_default();
    if let Some(user) = users.iter().find(|u| !members.contains(u)) {
        return meta_error(400, 131212, &format!("(#131212) {user} is not a participant of the group"));
    }
    members.retain(|m| !users.contains(m));
    (200, Some(json!({ "success": true })), None)
}
