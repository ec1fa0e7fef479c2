//! The Graph API's `/{version}/{phone_number_id}/messages` endpoint: request bodies, answers
//! and errors, and what to do about each error.

use serde_json::{Value, json};
use std::time::Duration;

/// The URL a channel's messages are posted to.
pub fn messages_url(base_url: &str, version: &str, phone_number_id: &str) -> String {
    format!("{}/{}/{}/messages", base_url.trim_end_matches('/'), version.trim_matches('/'), phone_number_id)
}

/// The body of a text message to `to` (already `+E.164`), as in Meta's send-messages docs.
pub fn text_message(to: &str, body: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": { "preview_url": false, "body": body },
    })
}

/// Longest text body Meta accepts, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

/// What the Graph API answered to a send.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    /// 200 with `messages[0].id`: accepted (not yet delivered; statuses come by webhook).
    Accepted { wamid: String },
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
            return SendOutcome::Accepted { wamid: wamid.to_string() };
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

/// What the delivery worker does after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again later with exponential backoff and jitter.
    Backoff,
    /// Pair rate limit (131056): Meta says retry after 4^n seconds.
    PairLimit,
    /// The access token is expired or invalid: retrying burns attempts until it is replaced.
    Credentials,
    /// Retrying cannot help; the message fails with the error and a hint.
    Never,
}

/// Classifies an error by Meta's `error.code` (not the HTTP status, which Meta uses
/// inconsistently for throttling); without a code, 5xx and 429 are transient.
pub fn classify(error: &GraphError) -> Retry {
    match error.code {
        Some(1 | 2 | 4 | 80007 | 130429 | 131000 | 131016 | 131057) => Retry::Backoff,
        Some(131056) => Retry::PairLimit,
        Some(0 | 190) => Retry::Credentials,
        Some(_) => Retry::Never,
        None if error.http_status >= 500 || error.http_status == 429 => Retry::Backoff,
        None => Retry::Never,
    }
}

/// One line, in the seed's words, on what to do about an error code.
pub fn hint(code: Option<i64>) -> Option<&'static str> {
    Some(match code? {
        131030 => {
            "recipient not in allowed list: the app is in development mode; add the number as a test recipient in WhatsApp -> API Setup, or complete Business Verification to go live"
        }
        131047 => {
            "more than 24 hours since the customer last wrote: only a template can reopen the conversation (use wa_send_template)"
        }
        0 | 190 => {
            "the access token has expired or is invalid: generate a permanent token for a System User and update the channel"
        }
        133010 => {
            "the business phone number is not registered with the Cloud API: register it in WhatsApp -> API Setup"
        }
        100 => "invalid parameter: the request was refused as malformed; check the recipient and the message fields",
        131026 => "message undeliverable: the recipient is not on WhatsApp or uses an old client",
        131021 => "the recipient is the business number itself",
        131031 => "the WhatsApp Business Account is locked: see Business Support",
        131056 => "too many messages to this customer in a short time (one per 6 seconds): it is retried",
        130429 | 80007 | 4 => "rate limit reached: it is retried",
        131053 => "media upload error: the file does not match its MIME type or is too large",
        132000 | 132001 => {
            "the template does not exist in this language, is not approved, or got the wrong number of parameters"
        }
        368 => "the account is temporarily blocked for policy violations",
        _ => return None,
    })
}

/// How long to wait before attempt `attempt + 1`, after `attempt` failed attempts (1-based).
/// `jitter` in `[0, 1)` spreads retries so that a recovering API is not hit in lockstep.
pub fn backoff(retry: Retry, attempt: u32, jitter: f64) -> Duration {
    let n = attempt.saturating_sub(1).min(16);
    let secs = match retry {
        Retry::PairLimit => 4f64.powi(n as i32).min(MAX_BACKOFF_SECS),
        _ => (2f64.powi(n as i32) * (1.0 + jitter)).min(MAX_BACKOFF_SECS),
    };
    Duration::from_secs_f64(secs)
}

const MAX_BACKOFF_SECS: f64 = 300.0;

/// Attempts after which a transient error is given up on (about 90 minutes of retrying).
pub const MAX_ATTEMPTS: u32 = 25;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_metas_text_body_and_url() {
        assert_eq!(
            messages_url("http://127.0.0.1:9/", "v25.0", "106540352242922"),
            "http://127.0.0.1:9/v25.0/106540352242922/messages"
        );
        assert_eq!(
            text_message("+15551234567", "hi").to_string(),
            r#"{"messaging_product":"whatsapp","recipient_type":"individual","text":{"body":"hi","preview_url":false},"to":"+15551234567","type":"text"}"#
        );
    }

    #[test]
    fn reads_accepted_and_failed_answers() {
        let ok = br#"{"messaging_product":"whatsapp","contacts":[{"input":"+1","wa_id":"1"}],"messages":[{"id":"wamid.X"}]}"#;
        assert_eq!(parse_send_response(200, ok), SendOutcome::Accepted { wamid: "wamid.X".into() });
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

    #[test]
    fn classifies_by_code_not_http_status() {
        let err =
            |code, http_status| GraphError { code: Some(code), http_status, message: String::new(), details: None };
        assert_eq!(classify(&err(130429, 400)), Retry::Backoff);
        assert_eq!(classify(&err(131056, 400)), Retry::PairLimit);
        assert_eq!(classify(&err(190, 401)), Retry::Credentials);
        assert_eq!(classify(&err(100, 500)), Retry::Never);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(Retry::Backoff, 1, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(Retry::Backoff, 4, 0.5), Duration::from_secs(12));
        assert_eq!(backoff(Retry::PairLimit, 3, 0.9), Duration::from_secs(16));
        assert_eq!(backoff(Retry::Backoff, 40, 0.0), Duration::from_secs(300));
    }
}
