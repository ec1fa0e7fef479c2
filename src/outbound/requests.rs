//! The Graph API bodies of the send functions (sql/outbound.sql's `wa_send_*()`), one per kind,
//! built by the pure functions of `whatsapp_cloud::graph_api` (unit-tested there); and the
//! recipient and error helpers of the SQL API.

use crate::pg::error::raise;
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode};
use whatsapp_cloud::{graph_api, phone};

/// Normalises a phone number to `+E.164` (`+1 555-123-4567` -> `+15551234567`), or raises an
/// error that says why it cannot be one.
#[pg_extern(immutable, strict, parallel_safe)]
fn wa_normalize_phone(phone: &str) -> String {
    phone::normalize(phone)
        .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.to_string(), phone::HINT))
}

/// What to do about a Graph API error code, in one line (NULL when there is nothing to say).
#[pg_extern(immutable, parallel_safe)]
fn wa_error_hint(code: Option<i32>) -> Option<&'static str> {
    graph_api::hint(code.map(i64::from))
}

/// Normalises a recipient: a phone number to `+E.164`, a business-scoped user id (BSUID,
/// `US.1349...`) as it is; anything else raises an error that says why.
#[pg_extern(immutable, strict, parallel_safe)]
fn wa_normalize_recipient(recipient: &str) -> String {
    recipient_of(recipient).as_str().to_string()
}

fn recipient_of(recipient: &str) -> phone::Recipient {
    phone::Recipient::parse(recipient)
        .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.to_string(), phone::HINT))
}

/// A request body, or the rule it breaks as an ERROR with a hint.
fn request(built: Result<serde_json::Value, graph_api::InvalidMessage>) -> JsonB {
    match built {
        Ok(body) => JsonB(body),
        Err(e) => raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.problem, e.hint),
    }
}

#[pg_extern(immutable, parallel_safe)]
fn _wa_text_request(recipient: &str, body: &str, reply_to: Option<&str>, preview_url: default!(bool, false)) -> JsonB {
    request(graph_api::text(&recipient_of(recipient), body, reply_to, preview_url))
}

#[pg_extern(immutable, parallel_safe)]
fn _wa_media_request(
    recipient: &str,
    kind: &str,
    link_or_media_id: &str,
    caption: Option<&str>,
    filename: Option<&str>,
) -> JsonB {
    request(graph_api::media(&recipient_of(recipient), kind, link_or_media_id, caption, filename))
}

#[pg_extern(immutable, parallel_safe)]
fn _wa_template_request(recipient: &str, name: &str, language: &str, components: Option<JsonB>) -> JsonB {
    request(graph_api::template(&recipient_of(recipient), name, language, components.as_ref().map(|c| &c.0)))
}

#[pg_extern(immutable, parallel_safe)]
fn _wa_interactive_request(recipient: &str, interactive: JsonB) -> JsonB {
    request(graph_api::interactive(&recipient_of(recipient), &interactive.0))
}

#[pg_extern(immutable, parallel_safe)]
fn _wa_location_request(
    recipient: &str,
    latitude: f64,
    longitude: f64,
    name: Option<&str>,
    address: Option<&str>,
) -> JsonB {
    request(graph_api::location(&recipient_of(recipient), latitude, longitude, name, address))
}

#[pg_extern(immutable, parallel_safe)]
fn _wa_reaction_request(recipient: &str, message_wamid: &str, emoji: Option<&str>) -> JsonB {
    JsonB(graph_api::reaction(&recipient_of(recipient), message_wamid, emoji.unwrap_or("")))
}

#[pg_extern(immutable, parallel_safe)]
fn _wa_mark_read_request(message_wamid: &str, typing: default!(bool, false)) -> JsonB {
    JsonB(graph_api::mark_read(message_wamid, typing))
}
