//! What the Graph API answers to a send: the message accepted, or an error object.

use serde_json::Value;

/// What the Graph API answered to a send.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    /// 200 with `messages[0].id`: accepted (not yet delivered; statuses come by webhook).
    /// `None` for a read receipt, which Meta answers with `{"success": true}`.
    Accepted { wamid: Option<String> },
    /// An error object, or an answer we could not read.
    Failed(GraphError),
}

/// A Graph API error, from `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphError {
    /// `error.code`, or `None` when the answer had no error object (proxy page, 5xx HTML).
    pub code: Option<i64>,
    pub http_status: u16,
    /// `error.message` (Meta says to rely on codes and details, not on titles).
    pub message: String,
    /// `error.error_data.details`.
    pub details: Option<String>,
}

/// Reads an answer of the messages endpoint.
pub fn parse_send_response(http_status: u16, body: &[u8]) -> SendOutcome {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if (200..300).contains(&http_status) {
        if let Some(wamid) = json.as_ref().and_then(|j| j.pointer("/messages/0/id")).and_then(Value::as_str) {
            return SendOutcome::Accepted { wamid: Some(wamid.to_string()) };
        }
        if json.as_ref().and_then(|j| j.get("success")) == Some(&Value::Bool(true)) {
            return SendOutcome::Accepted { wamid: None };
        }
    }
    let error = json.as_ref().and_then(|j| j.get("error"));
    let snippet = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    SendOutcome::Failed(GraphError {
        code: error.and_then(|e| e.get("code")).and_then(Value::as_i64),
        http_status,
        message: error
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {http_status} without a Graph API error object: {snippet}")),
        details: error.and_then(|e| e.pointer("/error_data/details")).and_then(Value::as_str).map(str::to_string),
    })
}

/// The error in an answer that is not what was asked for (an error status, or a 2xx without
/// the expected fields), read as a failed send: a 2xx counts as 400.
pub(super) fn error_answer(http_status: u16, body: &[u8]) -> GraphError {
    match parse_send_response(http_status.max(400), body) {
        SendOutcome::Failed(e) => e,
        SendOutcome::Accepted { .. } => unreachable!("an error status is never an acceptance"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph_api::{Retry, classify, hint};

    #[test]
    fn reads_accepted_and_failed_answers() {
        let ok = br#"{"messaging_product":"whatsapp","contacts":[{"input":"+1","wa_id":"1"}],"messages":[{"id":"wamid.X"}]}"#;
        assert_eq!(parse_send_response(200, ok), SendOutcome::Accepted { wamid: Some("wamid.X".into()) });
        assert_eq!(parse_send_response(200, br#"{"success":true}"#), SendOutcome::Accepted { wamid: None });
        // The real 131030 answer quoted in Neurotech-HQ/heyoo#40.
        let dev = br#"{"error":{"message":"(#131030) Recipient phone number not in allowed list","type":"OAuthException","code":131030,"error_data":{"messaging_product":"whatsapp","details":"Recipient's phone number is not whitelisted"},"error_subcode":2655007,"fbtrace_id":"A"}}"#;
        let SendOutcome::Failed(e) = parse_send_response(400, dev) else { panic!() };
        assert_eq!(e.code, Some(131030));
        assert_eq!(e.details.as_deref(), Some("Recipient's phone number is not whitelisted"));
        assert_eq!(classify(&e), Retry::Never);
        assert!(hint(e.code).unwrap().contains("development mode"));
        let SendOutcome::Failed(e) = parse_send_response(502, b"<html>Bad gateway</html>") else { panic!() };
        assert_eq!((e.code, classify(&e)), (None, Retry::Backoff));
        assert!(e.message.contains("HTTP 502"));
        // A 200 without a wamid is not an acceptance.
        assert!(matches!(parse_send_response(200, b"{}"), SendOutcome::Failed(_)));
    }
}
