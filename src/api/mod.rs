//! SQL functions written in Rust. Each is a thin shell around a pure function of the
//! `whatsapp_cloud` crate; what is only SQL lives in `sql/`.

pub mod graph_session;
mod media;
mod templates;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode};
use whatsapp_cloud::{channel, graph_api, phone, signature};

/// Raises an ERROR with a SQLSTATE, a message and a hint.
pub(crate) fn raise(code: PgSqlErrorCode, message: String, hint: &str) -> ! {
    ErrorReport::new(code, message, "whatsapp_channel").set_hint(hint).report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Adds a channel with the four credentials of the seed guide and returns its id.
/// Each field is checked, and a refusal names the field and where to copy it from.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn wa_add_channel(
    name: &str,
    phone_number_id: &str,
    access_token: &str,
    app_secret: &str,
    verify_token: &str,
    waba_id: default!(Option<&str>, "NULL"),
) -> i64 {
    if let Err(e) = channel::validate(name, phone_number_id, access_token, app_secret, verify_token) {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.to_string(), e.hint);
    }
    if let Some(Err(e)) = waba_id.map(channel::validate_business_account_id) {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.to_string(), e.hint);
    }
    crate::store::insert_channel(name, phone_number_id, access_token, app_secret, verify_token, waba_id)
}

/// `X-Hub-Signature-256` check, exactly as the listener does it: `sha256=` + hex HMAC-SHA256
/// of the raw body with the app secret, compared in constant time.
#[pg_extern(immutable, parallel_safe)]
fn wa_verify_signature(app_secret: &str, body: &[u8], signature_header: Option<&str>) -> bool {
    signature::verify(app_secret.as_bytes(), body, signature_header).is_ok()
}

/// The same check for a body given as text (its UTF-8 bytes are what is signed).
#[pg_extern(immutable, parallel_safe, name = "wa_verify_signature")]
fn wa_verify_signature_text(app_secret: &str, body: &str, signature_header: Option<&str>) -> bool {
    signature::verify(app_secret.as_bytes(), body.as_bytes(), signature_header).is_ok()
}

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

// The Graph API bodies, one per kind, built by the pure functions of `whatsapp_cloud::graph_api`
// (unit-tested there) for the SQL functions wa_send_*() in sql/outbound.sql.

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

/// Refuses what cannot be an access token, naming where to get one.
#[pg_extern(immutable, parallel_safe)]
fn _wa_check_access_token(access_token: &str) {
    if let Err(e) = channel::validate_access_token(access_token) {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.to_string(), e.hint);
    }
}

/// Wakes the delivery worker when the calling transaction commits.
#[pg_extern(volatile)]
fn _wa_wake_delivery() {
    crate::pg::commit_wake::delivery_at_commit();
}

/// Makes the webhook listener re-read its channels when the calling transaction commits.
#[pg_extern(volatile)]
fn _wa_wake_listener() {
    crate::pg::commit_wake::listener_at_commit();
}

/// Re-processes stored webhook events (all, or ids `first_id` to `last_id`, of one channel or
/// all): after an upgrade that parses more, or after fixing a channel that was missing. Adds
/// only what is not there yet (Meta's ids decide), notifies what it adds, and returns what it did.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn wa_replay_webhook_events(
    first_id: default!(Option<i64>, "NULL"),
    last_id: default!(Option<i64>, "NULL"),
    channel: default!(Option<&str>, "NULL"),
) -> TableIterator<'static, (name!(events, i64), name!(new_messages, i64), name!(new_statuses, i64))> {
    let r = crate::inbound::replay(first_id, last_id, channel, false);
    TableIterator::once((r.events, r.new_messages, r.new_statuses))
}
