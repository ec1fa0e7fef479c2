//! The Graph API calls that are not messages: blocking users, acting on a call, creating and
//! deleting templates, managing groups (`groups.rs` builds their bodies). The extension queues them in its action outbox (`wa_actions`) and the
//! delivery worker performs them; this file says, per kind, which method and URL each uses,
//! what its body is, and how its answer reads. Errors are classified as sends' are
//! ([`super::classify`]).

use super::{GraphError, InvalidMessage};
use serde_json::{Value, json};

/// What an action asks of the Graph API: the `wa_action_kind` enum of the schema, one to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// `POST /{phone_number_id}/block_users`.
    Block,
    /// `DELETE /{phone_number_id}/block_users`, the same body.
    Unblock,
    /// `POST /{phone_number_id}/calls`: pre_accept, accept, reject or terminate a call.
    Call,
    /// `POST /{waba_id}/message_templates`.
    CreateTemplate,
    /// `DELETE /{waba_id}/message_templates?name=…`: every language of the name.
    DeleteTemplate,
    /// `POST /{phone_number_id}/groups`: Meta answers a request id and creates the group after;
    /// its `group_create` webhook (with the same request id) brings its id and invite link.
    CreateGroup,
    /// `GET /{group_id}/invite_link`.
    GetGroupInviteLink,
    /// `POST /{group_id}/invite_link`: a new link; the old one stops working.
    ResetGroupInviteLink,
    /// `GET /{group_id}/join_requests`: the open ones.
    ListGroupJoinRequests,
    /// `POST /{group_id}/join_requests`, answered per request.
    ApproveGroupJoinRequests,
    /// `DELETE /{group_id}/join_requests`, the same body, answered per request.
    RejectGroupJoinRequests,
    /// `DELETE /{group_id}/participants`.
    RemoveGroupParticipants,
}

/// The HTTP methods actions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
}

/// Most users one block request may name (Meta's limit).
pub const MAX_BLOCK_USERS: usize = 1000;

/// Meta's code for a block or unblock request some of whose users failed (the answer then
/// lists them, each with its own errors, next to those that succeeded).
pub const BLOCK_PARTLY_FAILED: i64 = 139100;

impl ActionKind {
    /// The kind a `wa_action_kind` label names.
    pub fn from_sql(label: &str) -> Option<ActionKind> {
        Some(match label {
            "block" => ActionKind::Block,
            "unblock" => ActionKind::Unblock,
            "call" => ActionKind::Call,
            "create_template" => ActionKind::CreateTemplate,
            "delete_template" => ActionKind::DeleteTemplate,
            "create_group" => ActionKind::CreateGroup,
            "get_group_invite_link" => ActionKind::GetGroupInviteLink,
            "reset_group_invite_link" => ActionKind::ResetGroupInviteLink,
            "list_group_join_requests" => ActionKind::ListGroupJoinRequests,
            "approve_group_join_requests" => ActionKind::ApproveGroupJoinRequests,
            "reject_group_join_requests" => ActionKind::RejectGroupJoinRequests,
            "remove_group_participants" => ActionKind::RemoveGroupParticipants,
            _ => return None,
        })
    }

    pub fn method(self) -> Method {
        match self {
            ActionKind::GetGroupInviteLink | ActionKind::ListGroupJoinRequests => Method::Get,
            ActionKind::Block
            | ActionKind::Call
            | ActionKind::CreateTemplate
            | ActionKind::CreateGroup
            | ActionKind::ResetGroupInviteLink
            | ActionKind::ApproveGroupJoinRequests => Method::Post,
            ActionKind::Unblock
            | ActionKind::DeleteTemplate
            | ActionKind::RejectGroupJoinRequests
            | ActionKind::RemoveGroupParticipants => Method::Delete,
        }
    }

    /// Whether the request carries its body (a template's deletion names it in the URL; the
    /// group reads are GETs).
    pub fn has_body(self) -> bool {
        !matches!(self, ActionKind::DeleteTemplate | ActionKind::GetGroupInviteLink | ActionKind::ListGroupJoinRequests)
    }

    /// Whether the action is on the business account (templates) rather than the number.
    pub fn on_business_account(self) -> bool {
        matches!(self, ActionKind::CreateTemplate | ActionKind::DeleteTemplate)
    }

    /// The URL of the action. `owner` is the phone number id, or the WhatsApp Business Account
    /// id for templates; `target` is the template's name for a deletion, the group's id for an
    /// action on a group (a node of its own in the Graph API).
    pub fn url(self, base_url: &str, version: &str, owner: &str, target: Option<&str>) -> String {
        let root = format!("{}/{}", base_url.trim_end_matches('/'), version.trim_matches('/'));
        let base = format!("{root}/{owner}");
        let group = || format!("{root}/{}", percent_encode(target.unwrap_or_default()));
        match self {
            ActionKind::CreateGroup => format!("{base}/groups"),
            ActionKind::GetGroupInviteLink | ActionKind::ResetGroupInviteLink => format!("{}/invite_link", group()),
            ActionKind::ListGroupJoinRequests
            | ActionKind::ApproveGroupJoinRequests
            | ActionKind::RejectGroupJoinRequests => format!("{}/join_requests", group()),
            ActionKind::RemoveGroupParticipants => format!("{}/participants", group()),
            ActionKind::Block | ActionKind::Unblock => format!("{base}/block_users"),
            ActionKind::Call => format!("{base}/calls"),
            ActionKind::CreateTemplate => format!("{base}/message_templates"),
            ActionKind::DeleteTemplate => {
                format!("{base}/message_templates?name={}", percent_encode(target.unwrap_or_default()))
            }
        }
    }
}

/// Query-string and path encoding of a template name or a group id (letters, digits and
/// underscores in practice).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn invalid(problem: impl Into<String>, hint: &'static str) -> InvalidMessage {
    InvalidMessage { problem: problem.into(), hint }
}

/// The body of a block or unblock request: `users` are phone numbers (`+E.164`) or BSUIDs.
pub fn block_users(users: &[String]) -> Result<Value, InvalidMessage> {
    const HINT: &str = "Pass the customers' numbers, e.g. ARRAY['+15551234567'], at most 1,000 at a time.";
    if users.is_empty() {
        return Err(invalid("no recipients to block or unblock", HINT));
    }
    if users.len() > MAX_BLOCK_USERS {
        return Err(invalid(
            format!("{} recipients in one request; Meta takes at most {MAX_BLOCK_USERS}", users.len()),
            HINT,
        ));
    }
    let list: Vec<Value> = users.iter().map(|u| json!({ "user": u })).collect();
    Ok(json!({ "messaging_product": "whatsapp", "block_users": list }))
}

/// What can be done to a call: the `wa_call_action` enum of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallAction {
    PreAccept,
    Accept,
    Reject,
    Terminate,
}

impl CallAction {
    pub fn from_sql(label: &str) -> Option<CallAction> {
        Some(match label {
            "pre_accept" => CallAction::PreAccept,
            "accept" => CallAction::Accept,
            "reject" => CallAction::Reject,
            "terminate" => CallAction::Terminate,
            _ => return None,
        })
    }

    fn label(self) -> &'static str {
        match self {
            CallAction::PreAccept => "pre_accept",
            CallAction::Accept => "accept",
            CallAction::Reject => "reject",
            CallAction::Terminate => "terminate",
        }
    }

    /// pre_accept and accept answer the customer's SDP offer with the business's SDP answer.
    fn needs_sdp(self) -> bool {
        matches!(self, CallAction::PreAccept | CallAction::Accept)
    }
}

/// The body of a call action. Meta wants the SDP answer (RFC 8866) for pre_accept and accept,
/// and none for reject and terminate.
pub fn call_action(call_id: &str, action: CallAction, sdp: Option<&str>) -> Result<Value, InvalidMessage> {
    if call_id.trim().is_empty() {
        return Err(invalid("call_id is empty", "Pass the call's id (wacid.…), e.g. SELECT call_id FROM wa_calls."));
    }
    let mut body = json!({ "messaging_product": "whatsapp", "call_id": call_id, "action": action.label() });
    match (action.needs_sdp(), sdp.filter(|s| !s.trim().is_empty())) {
        (true, Some(sdp)) => body["session"] = json!({ "sdp_type": "answer", "sdp": sdp }),
        (true, None) => {
            return Err(invalid(
                format!("{} needs the SDP answer to the call's offer", action.label()),
                "Pass sdp => the answer your WebRTC stack made to the offer of the connect event (wa_call_events.payload -> 'session' ->> 'sdp').",
            ));
        }
        (false, Some(_)) => {
            return Err(invalid(format!("{} takes no SDP", action.label()), "Pass sdp only to pre_accept and accept."));
        }
        (false, None) => {}
    }
    Ok(body)
}

/// The template categories Meta accepts at creation.
pub const TEMPLATE_CATEGORIES: &[&str] = &["MARKETING", "UTILITY", "AUTHENTICATION"];

/// The body of a template creation. Meta checks the components itself (and answers 100 or
/// 1920xxx codes); this checks what makes the request malformed.
pub fn create_template(
    name: &str,
    language: &str,
    category: &str,
    components: &Value,
) -> Result<Value, InvalidMessage> {
    const NAME_HINT: &str =
        "A template name is lower-case letters, digits and underscores, at most 512 characters, e.g. 'order_update'.";
    if name.is_empty()
        || name.len() > 512
        || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(invalid(format!("{name:?} is not a template name"), NAME_HINT));
    }
    if language.trim().is_empty() {
        return Err(invalid("language is empty", "Pass a language code, e.g. 'en_US'."));
    }
    let category = category.to_ascii_uppercase();
    if !TEMPLATE_CATEGORIES.contains(&category.as_str()) {
        return Err(invalid(
            format!("{category:?} is not a template category"),
            "Pass MARKETING, UTILITY or AUTHENTICATION.",
        ));
    }
    if components.as_array().is_none_or(|c| c.is_empty()) {
        return Err(invalid(
            "components must be a non-empty JSON array",
            "Pass Meta's components, e.g. '[{\"type\":\"BODY\",\"text\":\"Your order {{1}} has shipped.\",\"example\":{\"body_text\":[[\"#42\"]]}}]'.",
        ));
    }
    Ok(json!({ "name": name, "language": language, "category": category, "components": components }))
}

/// What the Graph API answered to an action.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionOutcome {
    /// Done: Meta's answer (for a block, the users added or removed, and those that failed
    /// with their own errors, then `partly_failed` is Meta's summary error).
    Done {
        result: Value,
        partly_failed: Option<GraphError>,
    },
    Failed(GraphError),
}

/// Reads the answer to an action of `kind`.
pub fn parse_action_response(kind: ActionKind, http_status: u16, body: &[u8]) -> ActionOutcome {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let error = || super::error_answer(http_status, body);
    let Some(json) = json else { return ActionOutcome::Failed(error()) };
    let ok = (200..300).contains(&http_status);
    match kind {
        // Per-user results: answered even when some users failed (then with 139100 and an
        // error status), so that those that succeeded are known.
        ActionKind::Block | ActionKind::Unblock => match json.get("block_users") {
            Some(users) if users.is_object() => ActionOutcome::Done {
                result: users.clone(),
                partly_failed: (!ok || json.get("error").is_some()).then(error),
            },
            _ => ActionOutcome::Failed(error()),
        },
        ActionKind::Call | ActionKind::DeleteTemplate if ok && json.get("success") == Some(&Value::Bool(true)) => {
            ActionOutcome::Done { result: json, partly_failed: None }
        }
        ActionKind::CreateTemplate if ok && json.get("id").is_some_and(Value::is_string) => {
            ActionOutcome::Done { result: json, partly_failed: None }
        }
        ActionKind::CreateGroup if ok && json.get("request_id").is_some_and(Value::is_string) => {
            ActionOutcome::Done { result: json, partly_failed: None }
        }
        ActionKind::GetGroupInviteLink | ActionKind::ResetGroupInviteLink
            if ok && json.get("invite_link").is_some_and(Value::is_string) =>
        {
            ActionOutcome::Done { result: json, partly_failed: None }
        }
        ActionKind::ListGroupJoinRequests if ok && json.get("data").is_some_and(Value::is_array) => {
            ActionOutcome::Done { result: json, partly_failed: None }
        }
        // Per request, as a block is per user: those Meta could not decide are listed with
        // their own errors next to those it did. (Meta may instead answer only a request id
        // and tell the outcome by webhook: that is done too.)
        ActionKind::ApproveGroupJoinRequests | ActionKind::RejectGroupJoinRequests
            if ok
                && ["approved_join_requests", "rejected_join_requests", "failed_join_requests", "request_id"]
                    .iter()
                    .any(|k| json.get(k).is_some()) =>
        {
            let partly_failed = failed_join_requests(&json, http_status);
            ActionOutcome::Done { result: json, partly_failed }
        }
        ActionKind::RemoveGroupParticipants
            if ok
                && (json.get("success") == Some(&Value::Bool(true))
                    || json.get("request_id").is_some_and(Value::is_string)) =>
        {
            ActionOutcome::Done { result: json, partly_failed: None }
        }
        _ => ActionOutcome::Failed(error()),
    }
}

/// A summary of the join requests Meta could not approve or reject: the first one's error, and
/// how many failed; `None` when none did.
fn failed_join_requests(json: &Value, http_status: u16) -> Option<GraphError> {
    let failed = json.get("failed_join_requests")?.as_array().filter(|f| !f.is_empty())?;
    let first = &failed[0]["errors"][0];
    Some(GraphError {
        code: first["code"].as_i64(),
        http_status,
        message: format!(
            "{} join request(s) failed, first {}: {}",
            failed.len(),
            failed[0]["join_request_id"].as_str().unwrap_or("?"),
            first["message"].as_str().unwrap_or("no message")
        ),
        details: first["error_data"]["details"].as_str().map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph_api::{Retry, classify};

    #[test]
    fn urls_and_methods_per_kind() {
        let url = |k: ActionKind, t| k.url("https://graph.facebook.com/", "v23.0", "106", t);
        assert_eq!(url(ActionKind::Block, None), "https://graph.facebook.com/v23.0/106/block_users");
        assert_eq!(ActionKind::Unblock.method(), Method::Delete);
        assert_eq!(url(ActionKind::Call, None), "https://graph.facebook.com/v23.0/106/calls");
        assert_eq!(
            url(ActionKind::DeleteTemplate, Some("a b")),
            "https://graph.facebook.com/v23.0/106/message_templates?name=a%20b"
        );
        assert!(!ActionKind::DeleteTemplate.has_body() && ActionKind::CreateTemplate.on_business_account());
        for label in ["block", "unblock", "call", "create_template", "delete_template"] {
            assert!(ActionKind::from_sql(label).is_some(), "{label}");
        }
        assert_eq!(ActionKind::from_sql("groups"), None);
    }

    #[test]
    fn group_actions_go_to_the_number_or_to_the_group() {
        let url = |k: ActionKind| k.url("https://graph.facebook.com", "v23.0", "106", Some("Y2FwaV9=ZD"));
        let kinds = [
            ("create_group", Method::Post, "https://graph.facebook.com/v23.0/106/groups", true),
            ("get_group_invite_link", Method::Get, "https://graph.facebook.com/v23.0/Y2FwaV9%3DZD/invite_link", false),
            (
                "reset_group_invite_link",
                Method::Post,
                "https://graph.facebook.com/v23.0/Y2FwaV9%3DZD/invite_link",
                true,
            ),
            (
                "list_group_join_requests",
                Method::Get,
                "https://graph.facebook.com/v23.0/Y2FwaV9%3DZD/join_requests",
                false,
            ),
            (
                "approve_group_join_requests",
                Method::Post,
                "https://graph.facebook.com/v23.0/Y2FwaV9%3DZD/join_requests",
                true,
            ),
            (
                "reject_group_join_requests",
                Method::Delete,
                "https://graph.facebook.com/v23.0/Y2FwaV9%3DZD/join_requests",
                true,
            ),
            (
                "remove_group_participants",
                Method::Delete,
                "https://graph.facebook.com/v23.0/Y2FwaV9%3DZD/participants",
                true,
            ),
        ];
        for (label, method, expected, body) in kinds {
            let kind = ActionKind::from_sql(label).unwrap();
            assert_eq!((kind.method(), url(kind).as_str(), kind.has_body()), (method, expected, body), "{label}");
            assert!(!kind.on_business_account(), "{label}");
        }
    }

    #[test]
    fn reads_group_answers_and_join_requests_that_failed() {
        let created = br#"{"messaging_product":"whatsapp","request_id":"req.1"}"#;
        assert!(matches!(parse_action_response(ActionKind::CreateGroup, 200, created), ActionOutcome::Done { .. }));
        let link = br#"{"messaging_product":"whatsapp","invite_link":"https://chat.whatsapp.com/LINK"}"#;
        for kind in [ActionKind::GetGroupInviteLink, ActionKind::ResetGroupInviteLink] {
            let ActionOutcome::Done { result, .. } = parse_action_response(kind, 200, link) else { panic!() };
            assert_eq!(result["invite_link"], "https://chat.whatsapp.com/LINK");
        }
        let listed = br#"{"data":[{"join_request_id":"J1","wa_id":"16505551234","creation_timestamp":1744344400}],"paging":{"cursors":{"before":"a","after":"b"}}}"#;
        assert!(matches!(
            parse_action_response(ActionKind::ListGroupJoinRequests, 200, listed),
            ActionOutcome::Done { .. }
        ));
        let all = br#"{"messaging_product":"whatsapp","approved_join_requests":["J1"]}"#;
        assert_eq!(
            parse_action_response(ActionKind::ApproveGroupJoinRequests, 200, all),
            ActionOutcome::Done { result: serde_json::from_slice(all).unwrap(), partly_failed: None }
        );
        let some = br#"{"messaging_product":"whatsapp","rejected_join_requests":["J1"],"failed_join_requests":[{"join_request_id":"J2","errors":[{"code":131203,"message":"(#131203) Join request not found","title":"Join request not found","error_data":{"details":"No open join request J2"}}]}]}"#;
        let ActionOutcome::Done { partly_failed: Some(e), .. } =
            parse_action_response(ActionKind::RejectGroupJoinRequests, 200, some)
        else {
            panic!()
        };
        assert_eq!((e.code, e.details.as_deref()), (Some(131203), Some("No open join request J2")));
        assert!(e.message.contains("1 join request(s) failed, first J2"), "{}", e.message);
        assert!(matches!(
            parse_action_response(ActionKind::RemoveGroupParticipants, 200, br#"{"success":true}"#),
            ActionOutcome::Done { .. }
        ));
        // Meta's error for a group it does not know, and an answer that is not one.
        let unknown = br#"{"error":{"message":"(#100) Unsupported get request.","type":"GraphMethodException","code":100,"error_subcode":33}}"#;
        let ActionOutcome::Failed(e) = parse_action_response(ActionKind::GetGroupInviteLink, 400, unknown) else {
            panic!()
        };
        assert_eq!((e.code, classify(&e)), (Some(100), Retry::Never));
        assert!(matches!(
            parse_action_response(ActionKind::ListGroupJoinRequests, 200, b"{}"),
            ActionOutcome::Failed(_)
        ));
        assert!(matches!(
            parse_action_response(ActionKind::RemoveGroupParticipants, 200, b"{}"),
            ActionOutcome::Failed(_)
        ));
    }

    #[test]
    fn builds_block_call_and_template_bodies() {
        let body = block_users(&["+15551234567".into()]).unwrap();
        assert_eq!(body, json!({ "messaging_product": "whatsapp", "block_users": [{ "user": "+15551234567" }] }));
        assert!(block_users(&[]).is_err());
        assert!(block_users(&vec!["+1".to_string(); 1001]).unwrap_err().problem.contains("at most 1000"));

        let accept = call_action("wacid.1", CallAction::Accept, Some("v=0")).unwrap();
        assert_eq!(accept["session"], json!({ "sdp_type": "answer", "sdp": "v=0" }));
        assert_eq!(accept["action"], "accept");
        let reject = call_action("wacid.1", CallAction::Reject, None).unwrap();
        assert!(reject.get("session").is_none());
        assert!(call_action("wacid.1", CallAction::PreAccept, None).unwrap_err().problem.contains("needs the SDP"));
        assert!(call_action("wacid.1", CallAction::Terminate, Some("v=0")).is_err());

        let components = json!([{ "type": "BODY", "text": "Hi" }]);
        let t = create_template("order_update", "en_US", "utility", &components).unwrap();
        assert_eq!(t["category"], "UTILITY");
        assert!(create_template("Order Update", "en_US", "UTILITY", &components).is_err());
        assert!(create_template("x", "en_US", "PROMO", &components).is_err());
        assert!(create_template("x", "en_US", "UTILITY", &json!([])).is_err());
    }

    #[test]
    fn reads_answers_with_per_user_errors() {
        let all =
            br#"{"messaging_product":"whatsapp","block_users":{"added_users":[{"input":"+1555","wa_id":"1555"}]}}"#;
        let ActionOutcome::Done { result, partly_failed } = parse_action_response(ActionKind::Block, 200, all) else {
            panic!()
        };
        assert_eq!(result["added_users"][0]["wa_id"], "1555");
        assert!(partly_failed.is_none());
        let some = br#"{"messaging_product":"whatsapp","block_users":{"added_users":[],"failed_users":[{"input":"+1666","wa_id":"1666","errors":[{"message":"(#139102) Block user failed","code":139102}]}]},"error":{"message":"(#139100) Failed to block/unblock users","type":"OAuthException","code":139100,"error_data":{"details":"Failed to block some users."}}}"#;
        let ActionOutcome::Done { result, partly_failed } = parse_action_response(ActionKind::Block, 400, some) else {
            panic!()
        };
        assert_eq!(result["failed_users"][0]["errors"][0]["code"], 139102);
        assert_eq!(partly_failed.unwrap().code, Some(BLOCK_PARTLY_FAILED));
        // A whole-request error (a throttle) is retried like a send's.
        let throttle = br#"{"error":{"message":"(#130429) Rate limit hit","code":130429}}"#;
        let ActionOutcome::Failed(e) = parse_action_response(ActionKind::Block, 400, throttle) else { panic!() };
        assert_eq!(classify(&e), Retry::Backoff);
        assert_eq!(
            parse_action_response(ActionKind::Call, 200, br#"{"messaging_product":"whatsapp","success":true}"#),
            ActionOutcome::Done {
                result: json!({ "messaging_product": "whatsapp", "success": true }),
                partly_failed: None
            }
        );
        assert!(matches!(parse_action_response(ActionKind::Call, 200, b"{}"), ActionOutcome::Failed(_)));
        let created = br#"{"id":"594425479261596","status":"PENDING","category":"UTILITY"}"#;
        assert!(matches!(parse_action_response(ActionKind::CreateTemplate, 200, created), ActionOutcome::Done { .. }));
        let ActionOutcome::Failed(e) = parse_action_response(ActionKind::DeleteTemplate, 502, b"<html>") else {
            panic!()
        };
        assert_eq!(classify(&e), Retry::Backoff);
    }
}
