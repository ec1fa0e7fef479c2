//! The webhook signature check of the listener, as SQL functions, for whoever receives
//! webhooks some other way (a proxy, a queue) or wants to test a secret.

use crate::required;
use pgrx::prelude::*;
use whatsapp_cloud::signature;

/// `X-Hub-Signature-256` check, exactly as the listener does it: `sha256=` + hex HMAC-SHA256
/// of the raw body with the app secret, compared in constant time.
#[pg_extern(immutable, parallel_safe)]
fn wa_verify_signature(app_secret: Option<&str>, body: Option<&[u8]>, signature_header: Option<&str>) -> bool {
    required!(app_secret, body);
    signature::verify(app_secret.as_bytes(), body, signature_header).is_ok()
}

/// The same check for a body given as text (its UTF-8 bytes are what is signed).
#[pg_extern(immutable, parallel_safe, name = "wa_verify_signature")]
fn wa_verify_signature_text(app_secret: Option<&str>, body: Option<&str>, signature_header: Option<&str>) -> bool {
    required!(app_secret, body);
    signature::verify(app_secret.as_bytes(), body.as_bytes(), signature_header).is_ok()
}
