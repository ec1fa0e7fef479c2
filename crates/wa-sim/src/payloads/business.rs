//! What Meta says about the business (account, numbers, limits, templates), as its webhook
//! reference pages show it: one change on the WhatsApp Business Account's entry, with
//! `entry[].time` and no `metadata` (the account, not a number, is the subject).

use serde_json::{Value, json};

/// Business webhooks `wa-sim trigger` sends, each as Meta's documented example: `--text` is
/// the template name for the template kinds.
pub const BUSINESS_KINDS: &[&str] = &[
    "account_violation",
    "account_restriction",
    "account_offboarded",
    "account_alert",
    "account_review",
    "quality_flagged",
    "quality_unflagged",
    "limit_downgrade",
    "throughput_upgrade",
    "throughput_downgrade",
    "name_approved",
    "capability_update",
    "template_approved",
    "template_paused",
    "template_disabled",
    "template_quality",
    "template_category",
    "template_components",
    "webhook_error",
    "unknown_field",
];

/// The `(field, value)` of a business `kind` for `template` (language `en_US`), or `None`.
pub fn business_change(kind: &str, template: &str, display_phone_number: &str) -> Option<(&'static str, Value)> {
    let t = |extra: Value| {
        let mut v = json!({ "message_template_id": 594425479261596u64, "message_template_name": template,
                            "message_template_language": "en_US" });
        v.as_object_mut().expect("an object").extend(extra.as_object().expect("an object").clone());
        v
    };
    let quality = |event: &str, extra: Value| {
        let mut v = json!({ "display_phone_number": display_phone_number, "event": event });
        v.as_object_mut().expect("an object").extend(extra.as_object().expect("an object").clone());
        v
    };
    Some(match kind {
        "account_violation" => {
            ("account_update", json!({ "event": "ACCOUNT_VIOLATION", "violation_info": { "violation_type": "ADULT" } }))
        }
        "account_restriction" => (
            "account_update",
            json!({ "event": "ACCOUNT_RESTRICTION", "restriction_info": [
                { "restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expiration": "2026-12-31T13:59:20+0000" }] }),
        ),
        "account_offboarded" => ("account_update", json!({ "event": "ACCOUNT_OFFBOARDED" })),
        "account_alert" => (
            "account_alerts",
            json!({ "entity_type": "BUSINESS", "entity_id": "102290129340398", "alert_severity": "WARNING",
                    "alert_status": "ACTIVE", "alert_type": "INCREASED_CAPABILITIES_ELIGIBILITY_FAILED",
                    "alert_description": "Your business is not eligible for increased messaging limits." }),
        ),
        "account_review" => ("account_review_update", json!({ "decision": "APPROVED" })),
        "quality_flagged" => {
            ("phone_number_quality_update", quality("FLAGGED", json!({ "current_limit": "TIER_10K" })))
        }
        "quality_unflagged" => {
            ("phone_number_quality_update", quality("UNFLAGGED", json!({ "current_limit": "TIER_10K" })))
        }
        "limit_downgrade" => (
            "phone_number_quality_update",
            quality("DOWNGRADE", json!({ "old_limit": "TIER_10K", "current_limit": "TIER_2K" })),
        ),
        "throughput_upgrade" => ("phone_number_quality_update", quality("THROUGHPUT_UPGRADE", json!({}))),
        "throughput_downgrade" => ("phone_number_quality_update", quality("THROUGHPUT_DOWNGRADE", json!({}))),
        "name_approved" => (
            "phone_number_name_update",
            json!({ "display_phone_number": display_phone_number, "decision": "APPROVED",
                    "requested_verified_name": "Lucky Shrub", "rejection_reason": "NONE" }),
        ),
        "capability_update" => (
            "business_capability_update",
            json!({ "max_daily_conversation_per_phone": 2000, "max_daily_conversations_per_business": 2000,
                    "max_phone_numbers_per_business": 2, "max_phone_numbers_per_waba": 2 }),
        ),
        "template_approved" => ("message_template_status_update", t(json!({ "event": "APPROVED", "reason": "NONE" }))),
        "template_paused" => (
            "message_template_status_update",
            t(json!({ "event": "PAUSED", "reason": "NONE", "other_info": { "title": "FIRST_PAUSE",
                "description": "Your message template has been paused for 3 hours due to low quality." } })),
        ),
        "template_disabled" => ("message_template_status_update", t(json!({ "event": "DISABLED", "reason": "NONE" }))),
        "template_quality" => (
            "message_template_quality_update",
            t(json!({ "previous_quality_score": "GREEN", "new_quality_score": "YELLOW" })),
        ),
        "template_category" => {
            ("template_category_update", t(json!({ "previous_category": "UTILITY", "new_category": "MARKETING" })))
        }
        "template_components" => (
            "message_template_components_update",
            t(
                json!({ "message_template_element": "Your order {{1}} has shipped", "message_template_title": "Order update" }),
            ),
        ),
        "webhook_error" => (
            "messages",
            json!({ "messaging_product": "whatsapp", "errors": [{ "code": 130429, "title": "Rate limit hit",
                "message": "Rate limit hit", "error_data": { "details": "Cloud API message throughput has been reached." },
                "href": "/documentation/business-messaging/whatsapp/support/error-codes" }] }),
        ),
        "unknown_field" => {
            ("security", json!({ "display_phone_number": display_phone_number, "event": "PIN_CHANGED" }))
        }
        _ => return None,
    })
}

/// A webhook body of one business change on the account `waba_id`, sent at `time`. A
/// `messages` change (a webhook-level error) names its number in `metadata`, as Meta does.
pub fn business_body(waba_id: &str, phone_number_id: &str, field: &str, mut value: Value, time: i64) -> Value {
    if field == "messages" {
        value["metadata"] =
            json!({ "display_phone_number": super::BUSINESS_NUMBER, "phone_number_id": phone_number_id });
    }
    json!({ "object": "whatsapp_business_account",
            "entry": [{ "id": waba_id, "time": time, "changes": [{ "value": value, "field": field }] }] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_cloud::webhook::{BusinessKind, parse};

    /// Each kind is one business event to the extension's own parser, of the kind it names.
    #[test]
    fn every_business_kind_parses_as_its_event() {
        for kind in BUSINESS_KINDS {
            let (field, value) = business_change(kind, "order_update", "15550783881").unwrap();
            let body = business_body("102290129340398", "106540352242922", field, value, 1739321024).to_string();
            let payload = parse(body.as_bytes()).unwrap();
            let events = &payload.changes[0].business;
            assert_eq!(events.len(), 1, "{kind}: {events:?}");
            let expected = match *kind {
                "webhook_error" => BusinessKind::WebhookError,
                "unknown_field" => BusinessKind::UnknownField,
                k if k.starts_with("template") => {
                    assert_eq!(events[0].template.as_ref().unwrap().name, "order_update", "{kind}");
                    events[0].kind
                }
                _ => events[0].kind,
            };
            assert_eq!(events[0].kind, expected, "{kind}");
            assert_eq!(events[0].at, Some(1739321024), "{kind}");
        }
        let restriction = business_change("account_restriction", "t", "1").unwrap();
        let body = business_body("1", "2", restriction.0, restriction.1, 1).to_string();
        assert!(parse(body.as_bytes()).unwrap().changes[0].business[0].facts.stops_sending);
    }
}
