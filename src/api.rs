//! SQL functions written in Rust. Each is a thin shell around a pure function of the
//! `whatsapp_cloud` crate; what is only SQL lives in `sql/functions.sql`.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode};
use whatsapp_cloud::{channel, graph_api, phone, signature};

/// Raises an ERROR with a SQLSTATE, a message and a hint.
fn raise(code: PgSqlErrorCode, message: String, hint: &str) -> ! {
    ErrorReport::new(code, message, "whatsapp_channel").set_hint(hint).report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Adds a channel with the four credentials of the seed guide and returns its id.
/// Each field is checked, and a refusal names the field and where to copy it from.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn wa_add_channel(name: &str, phone_number_id: &str, access_token: &str, app_secret: &str, verify_token: &str) -> i64 {
    if let Err(e) = channel::validate(name, phone_number_id, access_token, app_secret, verify_token) {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.to_string(), e.hint);
    }
    crate::store::insert_channel(name, phone_number_id, access_token, app_secret, verify_token)
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

/// The Graph API body of a text message (so SQL and the worker build it the same way).
#[pg_extern(immutable, strict, parallel_safe)]
fn _wa_text_request(to: &str, body: &str) -> JsonB {
    JsonB(graph_api::text_message(to, body))
}

/// Wakes the delivery worker when the calling transaction commits.
#[pg_extern(volatile)]
fn _wa_wake_delivery() {
    crate::wake::delivery_at_commit();
}
