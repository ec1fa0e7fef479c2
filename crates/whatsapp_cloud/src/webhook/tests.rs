//! Meta's example payloads, and what [`parse`](super::parse) makes of each.

use super::*;
use serde_json::Value;

// Meta's text example (reference §1.7), verbatim.
pub(super) const TEXT: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234"}],"messages":[{"from":"16505551234","id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=","timestamp":"1749416383","type":"text","text":{"body":"Does it come in another color?"}}]},"field":"messages"}]}]}"#;

#[test]
fn nul_characters_become_replacement_characters() {
    let body = TEXT.replace("Does it come", "Does\\u0000it come").replace("\"profile\"", "\"pro\\u0000file\"");
    let payload = parse(body.as_bytes()).unwrap();
    let m = &payload.changes[0].messages[0];
    assert_eq!(m.text.as_deref(), Some("Does\u{FFFD}it come in another color?"));
    assert!(!m.raw.to_string().contains("\\u0000"));
    assert!(!serde_json::to_string(&m.raw).unwrap().contains('\u{0}'));
}

/// A POST of three texts whose middle one's body is `middle` (a JSON string literal).
fn three_texts(middle: &str) -> String {
    let text = |id: &str, body: &str| {
        format!(
            r#"{{"from":"16505551234","id":"{id}","timestamp":"1750263773","type":"text","text":{{"body":{body}}}}}"#
        )
    };
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"phone_number_id":"106540352242922"}},"messages":[{},{},{}]}},"field":"messages"}}]}}]}}"#,
        text("wamid.A", r#""first""#),
        text("wamid.B", middle),
        text("wamid.C", r#""third""#)
    )
}

#[test]
fn a_lone_surrogate_costs_nothing_but_the_character() {
    let payload = parse(three_texts(r#""bad \uD800 half""#).as_bytes()).unwrap();
    let texts: Vec<_> = payload.changes[0].messages.iter().map(|m| m.text.clone().unwrap_or_default()).collect();
    assert_eq!(texts, ["first", "bad \u{FFFD} half", "third"]);
    assert!(payload.changes[0].rejected.is_empty());
}

#[test]
fn a_message_nested_too_deep_is_refused_alone() {
    let deep = format!("{}\"x\"{}", "[".repeat(300), "]".repeat(300));
    let body = three_texts(r#""second""#)
        .replace(r#""text":{"body":"second"}"#, &format!(r#""text":{{"body":"second"}},"extra":{deep}"#));
    assert!(serde_json::from_str::<Value>(&body).is_err());
    let payload = parse(body.as_bytes()).unwrap();
    let c = &payload.changes[0];
    let ids: Vec<_> = c.messages.iter().map(|m| m.wamid.as_str()).collect();
    assert_eq!(ids, ["wamid.A", "wamid.C"]);
    assert_eq!(c.rejected.len(), 1);
    assert_eq!(c.rejected[0].raw["id"], "wamid.B");
}

// Meta's delivered status example (reference §1.5), and a per-message (PMP) one.
const DELIVERED: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"statuses":[{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjVBOTE3MDk5QUVFM0YA","status":"delivered","timestamp":"1750263773","recipient_id":"16505551234","conversation":{"id":"6ceb9d929c9bdc4f90e967a32f8639b4","origin":{"type":"service"}},"pricing":{"billable":true,"pricing_model":"CBP","category":"service"}},{"id":"wamid.PMP","status":"sent","timestamp":"1750263770","recipient_id":"16505551234","pricing":{"pricing_model":"PMP","type":"free_customer_service","category":"utility"}},{"id":"wamid.NOPRICE","status":"read","timestamp":"1750263790","recipient_id":"16505551234"}]},"field":"messages"}]}]}"#;

// A coexistence number's echo (users-2026 §3: value.message_echoes[] with from, to, id, type).
const ECHO: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"message_echoes":[{"from":"15550783881","to":"16505551234","id":"wamid.ECHO1","timestamp":"1750263800","type":"text","text":{"body":"Sent from the app"}},{"from":"15550783881","to":"16505551234","type":"text"}]},"field":"smb_message_echoes"}]}]}"#;

#[test]
fn parses_message_echoes() {
    let p = parse(ECHO.as_bytes()).unwrap();
    let c = &p.changes[0];
    assert_eq!(c.field, "smb_message_echoes");
    assert_eq!(c.echoes.len(), 1);
    let e = &c.echoes[0];
    assert_eq!((e.message.wamid.as_str(), e.to.as_deref()), ("wamid.ECHO1", Some("16505551234")));
    assert_eq!((e.message.kind.as_str(), e.message.text.as_deref()), ("text", Some("Sent from the app")));
    assert_eq!(e.message.timestamp, Some(1750263800));
    assert_eq!(c.rejected.len(), 1, "the echo without an id is kept as rejected");
    assert!(c.messages.is_empty());
}

// users-2026 §3: value.user_id_update[] with wa_id, user_id / parent_user_id previous and current.
const USER_ID_UPDATE: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"user_id_update":[{"wa_id":"16505551234","user_id":{"previous":"US.13491208655302741918","current":"US.99990000111122223333"},"parent_user_id":{"previous":"US.ENT.1","current":"US.ENT.2"},"timestamp":"1750263900"},{"wa_id":"16505551234","user_id":{"previous":"US.1"}}]},"field":"user_id_update"}]}]}"#;

#[test]
fn parses_user_id_updates() {
    let p = parse(USER_ID_UPDATE.as_bytes()).unwrap();
    let c = &p.changes[0];
    assert_eq!(
        c.user_id_updates,
        vec![UserIdUpdate {
            wa_id: Some("16505551234".into()),
            previous: Some("US.13491208655302741918".into()),
            current: "US.99990000111122223333".into(),
            parent_previous: Some("US.ENT.1".into()),
            parent_current: Some("US.ENT.2".into()),
        }]
    );
    assert_eq!(c.rejected.len(), 1, "an update without a current id is kept as rejected");
}

// users-2026 §3 (Calling API): a customer's call rings, then ends.
const CALLS: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234"}],"calls":[{"id":"wacid.ABGGFjFVU2AfAgo6V","from":"16505551234","to":"15550783881","event":"connect","direction":"USER_INITIATED","timestamp":"1750263700"},{"id":"wacid.ABGGFjFVU2AfAgo6V","from":"16505551234","to":"15550783881","event":"terminate","direction":"USER_INITIATED","timestamp":"1750263800","status":"COMPLETED","start_time":"1750263705","end_time":"1750263800","duration":95}]},"field":"calls"}]}]}"#;

#[test]
fn parses_calls() {
    let p = parse(CALLS.as_bytes()).unwrap();
    let calls = &p.changes[0].calls;
    assert_eq!(calls.len(), 2);
    assert_eq!((calls[0].event.as_str(), calls[0].direction.as_deref()), ("connect", Some("USER_INITIATED")));
    let end = &calls[1];
    assert_eq!(end.call_id, "wacid.ABGGFjFVU2AfAgo6V");
    assert_eq!(
        (end.status.as_deref(), end.start_time, end.end_time, end.duration),
        (Some("COMPLETED"), Some(1750263705), Some(1750263800), Some(95))
    );
}

// Meta's group messages webhook reference (a participant writes in a group) and a group
// message's aggregated read statuses (groups-messaging: one status object per participant).
const GROUP_MESSAGE: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Tiago Mingo"},"wa_id":"16505551234"}],"messages":[{"from":"16505551234","group_id":"HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA","id":"wamid.GROUP1","timestamp":"1744344496","text":{"body":"What does everyone think about this?"},"type":"text"}],"statuses":[{"id":"wamid.OUT1","recipient_id":"HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA","recipient_type":"group","recipient_participant_id":"16505551234","status":"read","timestamp":"1744344500"},{"id":"wamid.OUT1","recipient_id":"HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA","recipient_type":"group","recipient_participant_id":"16505550000","status":"read","timestamp":"1744344501"}]},"field":"messages"}]}]}"#;

#[test]
fn parses_group_messages_and_their_per_participant_statuses() {
    let c = &parse(GROUP_MESSAGE.as_bytes()).unwrap().changes[0];
    let m = &c.messages[0];
    assert_eq!(m.group_id.as_deref(), Some("HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA"));
    assert_eq!(m.from.as_deref(), Some("16505551234"));
    assert_eq!(c.sender_of(m).and_then(|s| s.profile_name.as_deref()), Some("Tiago Mingo"));
    let participants: Vec<_> = c.statuses.iter().map(|s| s.participant_id.as_deref()).collect();
    assert_eq!(participants, [Some("16505551234"), Some("16505550000")]);
    assert!(c.statuses.iter().all(|s| s.recipient_type.as_deref() == Some("group")));
    let text = parse(TEXT.as_bytes()).unwrap();
    assert_eq!(text.changes[0].messages[0].group_id, None, "a 1:1 message has no group");
}

// Meta's "Webhooks for Groups API": one example of each field.
const GROUP_EVENTS: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[
  {"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"groups":[{"timestamp":"1744344400","group_id":"G1","type":"group_create","request_id":"R1","subject":"Launch team","invite_link":"https://chat.whatsapp.com/LINK","join_approval_mode":"auto_approve"}]},"field":"group_lifecycle_update"},
  {"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"groups":[{"timestamp":"1744344401","group_id":"G1","type":"group_participants_add","reason":"invite_link","added_participants":[{"input":"+16505551234","wa_id":"16505551234"},{"wa_id":"16505550000"}]}]},"field":"group_participants_update"},
  {"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"groups":[{"timestamp":"1744344402","group_id":"G1","type":"group_participants_remove","initiated_by":"participant","removed_participants":[{"wa_id":"16505550000"}]}]},"field":"group_participants_update"},
  {"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"groups":[{"timestamp":"1744344403","group_id":"G1","type":"group_settings_update","request_id":"R2","profile_picture":{"mime_type":"image/jpeg","update_successful":true,"sha256":"H"},"group_subject":{"text":"Launch team v2","update_successful":true},"group_description":{"text":"not applied","update_successful":false}}]},"field":"group_settings_update"},
  {"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"groups":[{"timestamp":"1744344404","type":"group_suspend","group_id":"G1"},{"timestamp":"1744344405","type":"group_delete","group_id":"G2","request_id":"R3","errors":[{"code":131200,"message":"m","title":"t","error_data":{"details":"d"}}]},{"type":"group_suspend"}]},"field":"group_status_update"}]}]}"#;

#[test]
fn parses_every_group_webhook() {
    let p = parse(GROUP_EVENTS.as_bytes()).unwrap();
    let events: Vec<&GroupEvent> = p.changes.iter().flat_map(|c| &c.groups).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "group_create",
            "group_participants_add",
            "group_participants_remove",
            "group_settings_update",
            "group_suspend",
            "group_delete"
        ]
    );
    let create = events[0];
    assert_eq!(
        (create.subject.as_deref(), create.invite_link.as_deref(), create.join_approval_mode.as_deref()),
        (Some("Launch team"), Some("https://chat.whatsapp.com/LINK"), Some("auto_approve"))
    );
    assert_eq!((create.timestamp, create.failed), (Some(1744344400), false));
    assert_eq!(events[1].added, ["16505551234", "16505550000"]);
    assert_eq!(events[2].removed, ["16505550000"]);
    assert_eq!(events[3].subject.as_deref(), Some("Launch team v2"));
    assert_eq!(events[3].description, None, "a setting that failed to change is not taken");
    assert!(events[5].failed);
    assert_eq!(p.changes[4].rejected.len(), 1, "a group event without a group id is reported");
}

// Meta's history webhook reference: a chunk with two threads (a media placeholder among
// them), the media that follows, and a business that declined to share its history.
const HISTORY: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"history":[{"metadata":{"phase":0,"chunk_order":1,"progress":55},"threads":[{"id":"16505551234","messages":[{"from":"15550783881","id":"wamid.H1","timestamp":"1739230955","type":"text","text":{"body":"Here's the info you requested!"},"history_context":{"status":"READ"}},{"from":"15550783881","id":"wamid.H2","timestamp":"1739230970","type":"media_placeholder","history_context":{"status":"PLAYED"}},{"from":"16505551234","id":"wamid.H3","timestamp":"1739230971","type":"text","text":{"body":"Thanks!"},"history_context":{"status":"READ"}}]},{"id":"12125557890","messages":[{"from":"15550783881","id":"wamid.H4","timestamp":"1739230972","type":"text","text":{"body":"Thanks for your order!"},"history_context":{"status":"DELIVERED"}},{"from":"15550783881","type":"text"}]}]}]},"field":"history"},
  {"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"messages":[{"from":"15550783881","id":"wamid.H2","timestamp":"1738796547","type":"image","image":{"caption":"Black Prince echeveria","mime_type":"image/jpeg","sha256":"3f9d","id":"24230790383178626"}}]},"field":"history"},
  {"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"history":[{"errors":[{"code":2593109,"title":"History sync is turned off by the business from the WhatsApp Business App","message":"History sync is turned off by the business from the WhatsApp Business App","error_data":{"details":"History sharing is turned off by the business"}}]}]},"field":"history"}]}]}"#;

#[test]
fn parses_history_chunks_their_media_and_a_refusal() {
    let p = parse(HISTORY.as_bytes()).unwrap();
    let chunk = &p.changes[0];
    assert!(chunk.messages.is_empty(), "history is not live traffic");
    let h: Vec<(&str, Option<&str>, bool, Option<&str>)> = chunk
        .history
        .iter()
        .map(|m| (m.message.wamid.as_str(), m.customer.as_deref(), m.from_business, m.status.as_deref()))
        .collect();
    assert_eq!(
        h,
        [
            ("wamid.H1", Some("16505551234"), true, Some("read")),
            ("wamid.H2", Some("16505551234"), true, Some("played")),
            ("wamid.H3", Some("16505551234"), false, Some("read")),
            ("wamid.H4", Some("12125557890"), true, Some("delivered")),
        ]
    );
    assert_eq!(chunk.history[1].message.kind, "media_placeholder");
    assert_eq!(chunk.rejected.len(), 1, "a history message without an id is reported");
    assert_eq!(
        chunk.history_chunks,
        [HistoryChunk {
            phase: Some(0),
            chunk_order: Some(1),
            progress: Some(55),
            messages: 4,
            error_code: None,
            error: None
        }]
    );
    let media = &p.changes[1];
    assert!(media.messages.is_empty());
    let m = &media.history[0];
    assert_eq!((m.message.wamid.as_str(), m.message.kind.as_str(), m.from_business), ("wamid.H2", "image", true));
    assert_eq!(m.message.text.as_deref(), Some("Black Prince echeveria"));
    let declined = &p.changes[2].history_chunks[0];
    assert_eq!((declined.error_code, declined.messages), (Some(2593109), 0));
    assert!(declined.error.as_deref().unwrap().contains("turned off"));
}

// 360dialog's and Meta's smb_app_state_sync: contacts the business saved in the app.
const STATE_SYNC: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"state_sync":[{"type":"contact","contact":{"full_name":"Sheena Nelson","first_name":"Sheena","phone_number":"+1 650-555-1234"},"action":"add","metadata":{"timestamp":"1739230955"}},{"type":"contact","contact":{"phone_number":"12125557890"},"action":"remove","metadata":{"timestamp":"1739230956"}},{"type":"contact","contact":{"full_name":"No number"},"action":"add"}]},"field":"smb_app_state_sync"}]}]}"#;

#[test]
fn parses_contact_syncs() {
    let c = &parse(STATE_SYNC.as_bytes()).unwrap().changes[0];
    assert_eq!(
        c.contact_syncs,
        [
            ContactSync {
                wa_id: "16505551234".into(),
                full_name: Some("Sheena Nelson".into()),
                action: "add".into(),
                timestamp: Some(1739230955)
            },
            ContactSync {
                wa_id: "12125557890".into(),
                full_name: None,
                action: "remove".into(),
                timestamp: Some(1739230956)
            },
        ]
    );
    assert_eq!(c.rejected.len(), 1);
}

#[test]
fn parses_the_pricing_of_statuses() {
    let p = parse(DELIVERED.as_bytes()).unwrap();
    let s = &p.changes[0].statuses;
    let cbp = Pricing { model: Some("CBP".into()), kind: None, category: Some("service".into()), billable: Some(true) };
    assert_eq!(s[0].pricing.as_ref(), Some(&cbp));
    let pmp = Pricing {
        model: Some("PMP".into()),
        kind: Some("free_customer_service".into()),
        category: Some("utility".into()),
        billable: None,
    };
    assert_eq!(s[1].pricing.as_ref(), Some(&pmp));
    assert_eq!(s[2].pricing, None);
}

#[test]
fn parses_metas_text_example() {
    let p = parse(TEXT.as_bytes()).unwrap();
    assert_eq!(p.changes.len(), 1);
    let c = &p.changes[0];
    assert_eq!(c.field, "messages");
    assert_eq!(c.phone_number_id.as_deref(), Some("106540352242922"));
    let m = &c.messages[0];
    assert_eq!(m.wamid, "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=");
    assert_eq!(m.kind, "text");
    assert_eq!(m.text.as_deref(), Some("Does it come in another color?"));
    assert_eq!(m.timestamp, Some(1749416383));
    let sender = c.sender_of(m).unwrap();
    assert_eq!(sender.profile_name.as_deref(), Some("Sheena Nelson"));
    assert_eq!(sender.wa_id.as_deref(), Some("16505551234"));
}

#[test]
fn walks_every_entry_change_and_item() {
    let body = r#"{"entry":[
      {"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"1"},
         "messages":[{"id":"a","type":"text","text":{"body":"x"}},{"id":"b","type":"image","image":{"id":"9","caption":"cap"}}]}}]},
      {"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"2"},
         "statuses":[{"id":"w1","status":"delivered","timestamp":"5"},{"id":"w2","status":"failed","errors":[{"code":131030,"title":"Recipient phone number not in allowed list","error_data":{"details":"not whitelisted"}}]}]}},
         {"field":"account_alerts","value":{"anything":true}}]}]}"#;
    let p = parse(body.as_bytes()).unwrap();
    assert_eq!(p.changes.len(), 3);
    assert_eq!(p.message_count(), 2);
    assert_eq!(p.status_count(), 2);
    assert_eq!(p.changes[0].messages[1].text.as_deref(), Some("cap"));
    let failed = &p.changes[1].statuses[1];
    assert_eq!((failed.error_code, failed.error_details.as_deref()), (Some(131030), Some("not whitelisted")));
    assert_eq!(p.changes[2].field, "account_alerts");
}

#[test]
fn keeps_unknown_types_and_reports_items_without_ids() {
    let body = r#"{"entry":[{"changes":[{"field":"messages","value":{"messages":[
        {"id":"u","type":"poll_creation_v9","poll":{}},{"type":"text","text":{"body":"no id"}}],
        "statuses":[{"status":"read"}]}}]}]}"#;
    let c = &parse(body.as_bytes()).unwrap().changes[0];
    assert_eq!(c.messages.len(), 1);
    assert_eq!(c.messages[0].kind, "poll_creation_v9");
    assert_eq!(c.messages[0].from, None);
    assert_eq!(c.rejected.len(), 2);
}

#[test]
fn reads_the_text_an_agent_sees_for_each_kind() {
    let text_of = |m: &str| {
        let body = format!(r#"{{"entry":[{{"changes":[{{"field":"messages","value":{{"messages":[{m}]}}}}]}}]}}"#);
        parse(body.as_bytes()).unwrap().changes[0].messages[0].text.clone()
    };
    assert_eq!(
        text_of(r#"{"id":"1","type":"document","document":{"caption":"invoice","filename":"a.pdf"}}"#).as_deref(),
        Some("invoice")
    );
    assert_eq!(text_of(r#"{"id":"1","type":"interactive","interactive":{"type":"list_reply","list_reply":{"id":"r","title":"Row"}}}"#).as_deref(), Some("Row"));
    assert_eq!(text_of(r#"{"id":"1","type":"button","button":{"payload":"P","text":"Yes"}}"#).as_deref(), Some("Yes"));
    assert_eq!(
        text_of(r#"{"id":"1","type":"system","system":{"body":"changed","type":"user_changed_number"}}"#).as_deref(),
        Some("changed")
    );
    assert_eq!(text_of(r#"{"id":"1","type":"edit","edit":{"original_message_id":"o","message":{"type":"text","text":{"body":"new"}}}}"#).as_deref(), Some("new"));
    assert_eq!(
        text_of(r#"{"id":"1","type":"edit","edit":{"message":{"type":"image","image":{"caption":"c"}}}}"#).as_deref(),
        Some("c")
    );
    assert_eq!(text_of(r#"{"id":"1","type":"reaction","reaction":{"message_id":"m"}}"#), None);
}

#[test]
fn refuses_what_is_not_a_webhook() {
    assert!(parse(b"not json").unwrap_err().0.contains("not JSON"));
    assert!(parse(b"{\"object\":\"page\"}").unwrap_err().0.contains("entry"));
}
