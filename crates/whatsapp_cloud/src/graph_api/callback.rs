//! The outbox id a send carries in `biz_opaque_callback_data`, and reading it back from a
//! status.

use serde_json::Value;

/// What a send carries in `biz_opaque_callback_data` (Meta echoes it on every status of the
/// message): the outbox id, so that a status can tell which row it is about even when the
/// send's answer was never recorded (a crash between the request and its COMMIT).
pub const CALLBACK_PREFIX: &str = "whatsapp_channel:";

/// `request` (a Graph API message body, a JSON object) with the outbox id `message_id` in
/// `biz_opaque_callback_data`. A body that is not an object is returned unchanged: Meta will
/// refuse it for what it is.
pub fn with_callback_data(request: &str, message_id: i64) -> String {
    match serde_json::from_str::<Value>(request) {
        Ok(Value::Object(mut body)) => {
            body.insert("biz_opaque_callback_data".into(), Value::String(format!("{CALLBACK_PREFIX}{message_id}")));
            Value::Object(body).to_string()
        }
        _ => request.to_string(),
    }
}

/// The outbox id in a status's `biz_opaque_callback_data`, if it is one of ours.
pub fn callback_message_id(callback_data: &str) -> Option<i64> {
    let digits = callback_data.strip_prefix(CALLBACK_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_id_travels_in_the_callback_data_and_back() {
        let body = r#"{"messaging_product":"whatsapp","to":"+16505551234","type":"text","text":{"body":"hi"}}"#;
        let sent: Value = serde_json::from_str(&with_callback_data(body, 42)).unwrap();
        assert_eq!(sent["biz_opaque_callback_data"], "whatsapp_channel:42");
        assert_eq!(sent["text"]["body"], "hi");
        assert_eq!(callback_message_id("whatsapp_channel:42"), Some(42));
        for other in [
            "whatsapp_channel:",
            "whatsapp_channel:4x",
            "order-42",
            "whatsapp_channel:-1",
            "whatsapp_channel:99999999999999999999",
        ] {
            assert_eq!(callback_message_id(other), None, "{other}");
        }
        assert_eq!(with_callback_data("[1]", 1), "[1]");
    }
}
