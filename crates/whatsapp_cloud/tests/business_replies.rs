//! Marketing preferences and structured replies: Meta's documented example payloads (the
//! `user_preferences` webhook reference; "Receiving Flow Response"), kept verbatim in
//! `fixtures/`, and the shapes Meta documents only field by field (address and
//! call-permission replies, the `user_preference_changed` system message), and what the
//! parser makes of each.

use serde_json::json;
use whatsapp_cloud::webhook::{self, MarketingPreference};

fn fixture(name: &str) -> webhook::Payload {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    webhook::parse(&body).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn metas_user_preferences_example_is_a_stop_of_that_customer() {
    let p = fixture("user_preferences_stop.json");
    let c = &p.changes[0];
    assert_eq!(c.field, "user_preferences");
    assert_eq!(c.phone_number_id.as_deref(), Some("106540352242922"));
    assert!(c.rejected.is_empty() && c.messages.is_empty());
    assert_eq!(
        c.user_preferences,
        [webhook::UserPreference {
            wa_id: Some("16505551234".into()),
            user_id: None,
            preference: MarketingPreference::Stop,
            detail: Some("User requested to stop marketing messages".into()),
            timestamp: Some(1739321024),
        }]
    );
}

#[test]
fn a_preference_by_bsuid_is_read_and_other_values_are_refused_not_dropped() {
    let p = fixture("user_preferences_resume_bsuid.json");
    let c = &p.changes[0];
    assert_eq!(c.user_preferences.len(), 1);
    let u = &c.user_preferences[0];
    assert_eq!((u.wa_id.as_deref(), u.user_id.as_deref()), (None, Some("US.13491208655302741918")));
    assert_eq!((u.preference, u.timestamp), (MarketingPreference::Resume, Some(1739321124)));
    // "interested" is no marketing stop or resume, and an item without an id names nobody.
    assert_eq!(c.rejected.len(), 2);
    assert_eq!(c.rejected[0].raw["value"], "interested");
}

#[test]
fn the_system_message_user_preference_changed_is_a_message_and_a_preference() {
    let p = fixture("system_user_preference_changed.json");
    let c = &p.changes[0];
    assert_eq!(c.messages.len(), 1);
    assert_eq!(c.messages[0].text.as_deref(), Some("Sheena Nelson stopped marketing messages"));
    assert_eq!(c.user_preferences.len(), 1);
    let u = &c.user_preferences[0];
    assert_eq!(
        (u.wa_id.as_deref(), u.preference, u.timestamp),
        (Some("16505551234"), MarketingPreference::Stop, Some(1739321200))
    );
}

#[test]
fn metas_flow_response_example_keeps_its_answers_and_token() {
    let p = fixture("flow_reply.json");
    let m = &p.changes[0].messages[0];
    assert_eq!(m.kind, "interactive");
    let reply = m.structured_reply.as_ref().expect("an nfm_reply is a structured reply");
    assert_eq!(
        reply.response,
        Some(json!({"flow_token": "<FLOW_TOKEN>", "optional_param1": "<value1>", "optional_param2": "<value2>"}))
    );
    assert_eq!(reply.flow_token.as_deref(), Some("<FLOW_TOKEN>"));
    // Its body, "Sent", says nothing: the answers do (without the business's own token).
    assert_eq!(m.text.as_deref(), Some("Flow reply: optional_param1: <value1>, optional_param2: <value2>"));
}

#[test]
fn an_address_reply_reads_as_the_address() {
    let p = fixture("address_reply.json");
    let m = &p.changes[0].messages[0];
    let reply = m.structured_reply.as_ref().unwrap();
    assert_eq!(reply.response.as_ref().unwrap()["values"]["city"], "Mumbai");
    assert_eq!(reply.flow_token, None);
    let text = m.text.as_deref().unwrap();
    assert!(text.starts_with("Address: address: Wework, city: Mumbai, floor_number: 8"), "{text}");
    assert!(!text.contains("building_name"), "empty answers are left out: {text}");
}

#[test]
fn a_call_permission_reply_says_whether_calls_are_allowed() {
    let p = fixture("call_permission_reply.json");
    let m = &p.changes[0].messages[0];
    let reply = m.structured_reply.as_ref().unwrap();
    assert_eq!(reply.response.as_ref().unwrap()["expiration_timestamp"], 1750868700);
    assert_eq!(m.text.as_deref(), Some("Call permission accepted"));
}

#[test]
fn a_flow_reply_whose_response_json_is_not_json_is_kept_and_says_so() {
    let body = std::fs::read_to_string(format!("{}/tests/fixtures/flow_reply.json", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .replace(r#""response_json": "{"#, r#""response_json": "not json {"#);
    let p = webhook::parse(body.as_bytes()).unwrap();
    let m = &p.changes[0].messages[0];
    let reply = m.structured_reply.as_ref().unwrap();
    assert_eq!((reply.response.as_ref(), reply.flow_token.as_ref()), (None, None));
    assert_eq!(m.text.as_deref(), Some("Flow reply: response_json is not JSON"));
}

#[test]
fn long_answers_are_cut_for_the_preview() {
    let answers: serde_json::Map<String, serde_json::Value> =
        (0..40).map(|i| (format!("q{i:02}"), json!("an answer of some length"))).collect();
    let response = serde_json::to_string(&answers).unwrap();
    let body = json!({"entry": [{"changes": [{"field": "messages", "value": {"metadata": {"phone_number_id": "1"},
        "messages": [{"id": "wamid.LONG", "from": "1", "type": "interactive",
                      "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent", "response_json": response}}}]}}]}]});
    let p = webhook::parse(body.to_string().as_bytes()).unwrap();
    let text = p.changes[0].messages[0].text.clone().unwrap();
    assert!(text.starts_with("Flow reply: q00: an answer of some length, q01:"), "{text}");
    assert!(text.ends_with('…') && text.chars().count() <= "Flow reply: ".len() + 120, "{text}");
}
