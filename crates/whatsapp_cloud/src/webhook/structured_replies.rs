//! Structured answers a customer sends back: a Flow's answers (`interactive.nfm_reply` named
//! `flow`), an address (`nfm_reply` named `address_message`) and a call permission
//! (`interactive.call_permission_reply`). Each is kept whole as JSON (`flow_response`) and
//! summed up in one short line an agent can read in a list (the message's `text`).

use super::str_at;
use serde_json::{Map, Value};

/// How long the summary of the answers may grow before it is cut (the conversation preview
/// shows 200 characters, and the label comes first).
const MAX_ANSWERS: usize = 120;

/// A structured reply, read.
#[derive(Debug, Clone, PartialEq)]
pub struct StructuredReply {
    /// The answers as JSON: `response_json` parsed (a Flow, an address), or the
    /// `call_permission_reply` object; `None` when `response_json` is not JSON (the raw
    /// payload still holds it, and the text says so).
    pub response: Option<Value>,
    /// `flow_token` of a Flow's answers: the token the business sent the Flow with, which is
    /// how it tells which Flow (and which send of it) was answered; Meta sends no Flow id.
    pub flow_token: Option<String>,
    /// One line for an inbox list: "Flow reply: date: 2026-12-24, guests: 2".
    pub text: String,
}

/// The structured reply of an `interactive` message object, if it is one.
pub(super) fn parse_structured_reply(interactive: &Value) -> Option<StructuredReply> {
    match str_at(interactive, &["type"])?.as_str() {
        "nfm_reply" => Some(nfm_reply(interactive.get("nfm_reply")?)),
        "call_permission_reply" => Some(call_permission_reply(interactive.get("call_permission_reply")?)),
        _ => None,
    }
}

fn nfm_reply(reply: &Value) -> StructuredReply {
    let name = str_at(reply, &["name"]).unwrap_or_default();
    let response: Option<Value> =
        str_at(reply, &["response_json"]).and_then(|json| serde_json::from_str::<Value>(&json).ok());
    // A Flow's `body` is "Sent" in Meta's examples: a label only when it says more.
    let body = str_at(reply, &["body"]).filter(|b| !b.trim().is_empty() && b != "Sent");
    let label = match (name.as_str(), body) {
        ("address_message", Some(body)) => format!("Address ({body})"),
        ("address_message", None) => "Address".to_string(),
        (_, Some(body)) => format!("Flow reply ({body})"),
        (_, None) => "Flow reply".to_string(),
    };
    let Some(response) = response else {
        return StructuredReply {
            response: None,
            flow_token: None,
            text: format!("{label}: response_json is not JSON"),
        };
    };
    let flow_token = str_at(&response, &["flow_token"]);
    // An address's answers are under `values` (with the id of a saved address beside them).
    let answers = response.get("values").filter(|_| name == "address_message").unwrap_or(&response);
    let summary = summarise(answers);
    let text = if summary.is_empty() { label } else { format!("{label}: {summary}") };
    StructuredReply { response: Some(response), flow_token, text }
}

fn call_permission_reply(reply: &Value) -> StructuredReply {
    let answer = match str_at(reply, &["response"]).as_deref() {
        Some("accept") => "accepted",
        Some("reject") => "rejected",
        _ => "answered",
    };
    let permanent = reply.get("is_permanent").and_then(Value::as_bool) == Some(true);
    let text =
        format!("Call permission {answer}{}", if permanent && answer == "accepted" { " (permanent)" } else { "" });
    StructuredReply { response: Some(reply.clone()), flow_token: None, text }
}

/// `key: value, key: value` of an object's answers (the flow token left out: it is the
/// business's own id, not an answer), cut at [`MAX_ANSWERS`] characters.
fn summarise(answers: &Value) -> String {
    let Some(map) = answers.as_object() else { return String::new() };
    let parts: Vec<String> = map
        .iter()
        .filter(|(k, v)| k.as_str() != "flow_token" && !is_empty(v))
        .map(|(k, v)| format!("{k}: {}", scalar(v)))
        .collect();
    let joined = parts.join(", ");
    if joined.chars().count() <= MAX_ANSWERS {
        return joined;
    }
    let cut: String = joined.chars().take(MAX_ANSWERS - 1).collect();
    format!("{cut}…")
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(" / "),
        Value::Object(map) => object_text(map),
        other => other.to_string(),
    }
}

fn object_text(map: &Map<String, Value>) -> String {
    map.values().filter(|v| !is_empty(v)).map(scalar).collect::<Vec<_>>().join(" ")
}
