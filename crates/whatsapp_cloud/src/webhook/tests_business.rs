//! Meta's documented example of each business webhook field (its webhook reference pages under
//! `developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/`,
//! Apr-May 2026: the syntax with Meta's example values), and what the parser makes of each.

use super::*;

/// One entry of the WABA `102290129340398`, sent at `1739321024`, with one change.
fn body(field: &str, value: &str) -> String {
    format!(
        r#"{{"entry":[{{"id":"102290129340398","time":1739321024,"changes":[{{"value":{value},"field":"{field}"}}]}}],"object":"whatsapp_business_account"}}"#
    )
}

/// The one business event of a one-change body.
fn event(field: &str, value: &str) -> BusinessEvent {
    let payload = parse(body(field, value).as_bytes()).unwrap();
    let change = &payload.changes[0];
    assert_eq!(change.business_account_id.as_deref(), Some("102290129340398"));
    assert!(change.messages.is_empty() && change.statuses.is_empty() && change.rejected.is_empty());
    assert_eq!(change.business.len(), 1, "{:?}", change.business);
    let e = change.business[0].clone();
    assert_eq!((e.field.as_str(), e.at), (field, Some(1739321024)));
    e
}

#[test]
fn account_update_violation() {
    let e = event("account_update", r#"{"event":"ACCOUNT_VIOLATION","violation_info":{"violation_type":"ADULT"}}"#);
    assert_eq!(e.kind, BusinessKind::AccountUpdate);
    assert_eq!(e.summary, "ACCOUNT_VIOLATION: violation ADULT");
    assert_eq!(e.facts.account_status.as_deref(), Some("ACCOUNT_VIOLATION"));
    assert_eq!(e.facts.account_event.as_deref(), Some("ACCOUNT_VIOLATION: violation ADULT"));
    assert!(!e.facts.stops_sending, "a violation alone is a warning");
}

#[test]
fn account_update_restriction_stops_sending() {
    let e = event(
        "account_update",
        r#"{"event":"ACCOUNT_RESTRICTION","restriction_info":[{"restriction_type":"RESTRICTED_BIZ_INITIATED_MESSAGING","expiration":"2026-04-19T13:59:20+0000"}]}"#,
    );
    assert_eq!(e.summary, "ACCOUNT_RESTRICTION: RESTRICTED_BIZ_INITIATED_MESSAGING until 2026-04-19T13:59:20+0000");
    assert!(e.facts.stops_sending);
    assert_eq!(e.facts.account_status.as_deref(), Some("ACCOUNT_RESTRICTION"));
    // A restriction on adding numbers does not stop sending.
    let e = event(
        "account_update",
        r#"{"event":"ACCOUNT_RESTRICTION","restriction_info":[{"restriction_type":"RESTRICTED_ADD_PHONE_NUMBER_ACTION","expiration":1739321024}]}"#,
    );
    assert!(!e.facts.stops_sending);
}

#[test]
fn account_update_ban_and_offboarding() {
    let e = event(
        "account_update",
        r#"{"event":"DISABLED_UPDATE","ban_info":{"waba_ban_state":["DISABLE"],"waba_ban_date":"2026-02-11"}}"#,
    );
    assert_eq!(e.summary, "DISABLED_UPDATE: ban state DISABLE on 2026-02-11");
    assert_eq!(e.facts.account_status.as_deref(), Some("DISABLE"));
    assert!(e.facts.stops_sending);
    let scheduled = event(
        "account_update",
        r#"{"event":"DISABLED_UPDATE","ban_info":{"waba_ban_state":["SCHEDULE_FOR_DISABLE"]}}"#,
    );
    assert!(!scheduled.facts.stops_sending, "scheduled is a warning until it happens");
    let off = event("account_update", r#"{"event":"ACCOUNT_OFFBOARDED"}"#);
    assert!(off.facts.stops_sending);
    assert_eq!(off.facts.account_event.as_deref(), Some("ACCOUNT_OFFBOARDED"));
    // Verification and partner events are kept as events but change nothing about sending.
    let v = event("account_update", r#"{"event":"VERIFIED_ACCOUNT"}"#);
    assert_eq!((v.facts.account_event, v.facts.stops_sending), (None, false));
}

#[test]
fn account_alerts() {
    let e = event(
        "account_alerts",
        r#"{"entity_type":"PHONE_NUMBER","entity_id":"106540352242922","alert_severity":"WARNING","alert_status":"ACTIVE","alert_type":"INCREASED_CAPABILITIES_ELIGIBILITY_FAILED","alert_description":"Your business is not eligible for increased messaging limits."}"#,
    );
    assert_eq!(e.kind, BusinessKind::AccountAlert);
    assert_eq!(
        e.summary,
        "WARNING INCREASED_CAPABILITIES_ELIGIBILITY_FAILED (ACTIVE) - Your business is not eligible for increased messaging limits."
    );
    assert_eq!(e.facts, ChannelFacts::default());
}

#[test]
fn account_review_update() {
    let e = event("account_review_update", r#"{"decision":"REJECTED"}"#);
    assert_eq!(e.kind, BusinessKind::AccountReview);
    assert_eq!(e.facts.account_event.as_deref(), Some("account review: REJECTED"));
}

#[test]
fn phone_number_quality_update_flagged_caps_the_rate() {
    let e = event(
        "phone_number_quality_update",
        r#"{"display_phone_number":"15550783881","event":"FLAGGED","current_limit":"TIER_10K","max_daily_conversations_per_business":"10000"}"#,
    );
    assert_eq!(e.kind, BusinessKind::PhoneNumberQuality);
    assert_eq!(e.display_phone_number.as_deref(), Some("15550783881"));
    assert_eq!(e.facts.quality_rating.as_deref(), Some("FLAGGED"));
    assert_eq!(e.facts.messaging_limit.as_deref(), Some("10000"));
    assert_eq!((e.facts.throughput, e.facts.send_rate_cap), (None, Some(STANDARD_THROUGHPUT)));
    let down = event(
        "phone_number_quality_update",
        r#"{"display_phone_number":"15550783881","event":"DOWNGRADE","old_limit":"TIER_10K","current_limit":"TIER_2K"}"#,
    );
    assert_eq!(down.summary, "DOWNGRADE from TIER_10K to TIER_2K");
    assert_eq!((down.facts.messaging_limit.as_deref(), down.facts.send_rate_cap), (Some("TIER_2K"), None));
}

#[test]
fn phone_number_quality_update_throughput() {
    let up = event(
        "phone_number_quality_update",
        r#"{"display_phone_number":"15550783881","event":"THROUGHPUT_UPGRADE","current_limit":"TIER_UNLIMITED"}"#,
    );
    assert_eq!((up.facts.throughput, up.facts.send_rate_cap), (Some(HIGH_THROUGHPUT), Some(HIGH_THROUGHPUT)));
    assert_eq!(up.facts.messaging_limit, None, "a throughput level is not a messaging limit");
    let down = event(
        "phone_number_quality_update",
        r#"{"display_phone_number":"15550783881","event":"THROUGHPUT_DOWNGRADE"}"#,
    );
    assert_eq!(down.facts.send_rate_cap, Some(STANDARD_THROUGHPUT));
}

#[test]
fn phone_number_name_update() {
    let e = event(
        "phone_number_name_update",
        r#"{"display_phone_number":"15550783881","decision":"APPROVED","requested_verified_name":"Lucky Shrub","rejection_reason":"NONE"}"#,
    );
    assert_eq!(e.kind, BusinessKind::PhoneNumberName);
    assert_eq!(e.summary, "display name \"Lucky Shrub\" APPROVED");
    assert_eq!(e.facts.display_name_status.as_deref(), Some("APPROVED"));
}

#[test]
fn business_capability_update() {
    let e = event(
        "business_capability_update",
        r#"{"max_daily_conversation_per_phone":2000,"max_daily_conversations_per_business":2000,"max_phone_numbers_per_business":2,"max_phone_numbers_per_waba":2}"#,
    );
    assert_eq!(e.kind, BusinessKind::BusinessCapability);
    assert_eq!(e.facts.messaging_limit.as_deref(), Some("2000"));
}

#[test]
fn message_template_status_update_paused() {
    let e = event(
        "message_template_status_update",
        r#"{"event":"PAUSED","message_template_id":594425479261596,"message_template_name":"order_update","message_template_language":"en_US","reason":"NONE","other_info":{"title":"FIRST_PAUSE","description":"Your message template has been paused for 3 hours until Feb 11, 2026 due to low quality."}}"#,
    );
    let t = e.template.unwrap();
    assert_eq!((t.name.as_str(), t.language.as_str(), t.status.as_deref()), ("order_update", "en_US", Some("PAUSED")));
    assert_eq!(t.template_id.as_deref(), Some("594425479261596"));
    assert_eq!(
        t.reason.as_deref(),
        Some("Your message template has been paused for 3 hours until Feb 11, 2026 due to low quality.")
    );
    let rejected = event(
        "message_template_status_update",
        r#"{"event":"REJECTED","message_template_id":594425479261596,"message_template_name":"order_update","message_template_language":"en_US","reason":"INCORRECT_CATEGORY"}"#,
    );
    assert_eq!(rejected.template.unwrap().reason.as_deref(), Some("INCORRECT_CATEGORY"));
}

#[test]
fn message_template_quality_update() {
    let e = event(
        "message_template_quality_update",
        r#"{"previous_quality_score":"GREEN","new_quality_score":"YELLOW","message_template_id":806312974732579,"message_template_name":"welcome_template","message_template_language":"en-US"}"#,
    );
    assert_eq!(e.summary, "template \"welcome_template\" (en-US) quality GREEN -> YELLOW");
    assert_eq!(e.template.unwrap().quality_score.as_deref(), Some("YELLOW"));
}

#[test]
fn template_category_update() {
    let done = event(
        "template_category_update",
        r#"{"message_template_id":278077987921796,"message_template_name":"order_confirmation","message_template_language":"en_US","previous_category":"UTILITY","new_category":"MARKETING"}"#,
    );
    let t = done.template.unwrap();
    assert_eq!((t.previous_category.as_deref(), t.category.as_deref()), (Some("UTILITY"), Some("MARKETING")));
    let ahead = event(
        "template_category_update",
        r#"{"message_template_id":278077987921796,"message_template_name":"order_confirmation","message_template_language":"en_US","correct_category":"MARKETING","category_update_timestamp":1739925824}"#,
    );
    let t = ahead.template.unwrap();
    assert_eq!((t.category.as_deref(), t.category_changes_at), (Some("MARKETING"), Some(1739925824)));
}

#[test]
fn message_template_components_update() {
    let e = event(
        "message_template_components_update",
        r#"{"message_template_id":12345678,"message_template_name":"my_message_template","message_template_language":"en-US","message_template_title":"Message template title","message_template_element":"Message template body text","message_template_footer":"Message template footer","message_template_buttons":[{"message_template_button_type":"URL","message_template_button_text":"Visit","message_template_button_url":"https://www.luckyshrub.com"}]}"#,
    );
    let t = e.template.unwrap();
    assert!(t.components_changed);
    assert_eq!(t.name, "my_message_template");
}

#[test]
fn unknown_fields_and_webhook_errors_are_events() {
    let e = event("security", r#"{"display_phone_number":"15550783881","event":"PIN_CHANGED"}"#);
    assert_eq!(e.kind, BusinessKind::UnknownField);
    assert!(e.summary.contains("\"security\""));
    // Meta's webhook-level error (value.errors[], WH-MESSAGES): on a messages change.
    let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"errors":[{"code":130429,"title":"Rate limit hit","message":"Rate limit hit","error_data":{"details":"Cloud API message throughput has been reached."},"href":"/documentation/business-messaging/whatsapp/support/error-codes"}]},"field":"messages"}]}]}"#;
    let change = &parse(body.as_bytes()).unwrap().changes[0];
    assert_eq!(change.business.len(), 1);
    let e = &change.business[0];
    assert_eq!(e.kind, BusinessKind::WebhookError);
    assert_eq!(e.summary, "error 130429 Rate limit hit (Cloud API message throughput has been reached.)");
    // The fields of conversations are no events.
    assert!(parse(super::tests::TEXT.as_bytes()).unwrap().changes[0].business.is_empty());
}
