//! Every payload parses with the extension's own parser and goes under the field Meta uses.

use super::envelope::field_of;
use super::*;
use serde_json::{Value, json};
use whatsapp_cloud::webhook;

#[test]
fn every_kind_parses_with_the_extensions_parser() {
    let from = Customer { wa_id: "16505551234".into(), name: "Sheena".into() };
    for kind in MESSAGE_KINDS {
        let body = envelope("1", message_value(kind, &format!("wamid.{kind}"), &from, "hello", 1749416383).unwrap());
        let parsed = webhook::parse(body.to_string().as_bytes()).unwrap();
        let change = &parsed.changes[0];
        assert_eq!(change.messages.len(), 1, "{kind}");
        assert_eq!(change.messages[0].wamid, format!("wamid.{kind}"));
        assert!(change.rejected.is_empty(), "{kind}");
    }
    for s in STATUS_KINDS {
        let parsed = webhook::parse(status("1", "wamid.x", s, "16505551234", 1).to_string().as_bytes()).unwrap();
        assert_eq!(parsed.changes[0].statuses[0].status, *s);
    }
}

#[test]
fn echoes_and_user_id_updates_parse_with_the_extensions_parser() {
    let body =
        batch("1", vec![echo_value("wamid.e", "16505551234", "hi", 1), user_id_update_value("1", "US.A", "US.B", 1)]);
    let parsed = webhook::parse(body.to_string().as_bytes()).unwrap();
    assert_eq!((parsed.changes[0].field.as_str(), parsed.changes[0].echoes.len()), ("smb_message_echoes", 1));
    assert_eq!(parsed.changes[1].field, "user_id_update");
    assert_eq!(parsed.changes[1].user_id_updates[0].current, "US.B");
    let call = batch("1", vec![call_value("wacid.1", "16505551234", "terminate", Some("FAILED"), None, 5)]);
    let parsed = webhook::parse(call.to_string().as_bytes()).unwrap();
    assert_eq!(
        (parsed.changes[0].field.as_str(), parsed.changes[0].calls[0].status.as_deref()),
        ("calls", Some("FAILED"))
    );
}

#[test]
fn batch_packs_several_updates_into_one_post() {
    let from = Customer { wa_id: "1".into(), name: "n".into() };
    let values = (0..3).map(|i| message_value("text", &format!("w{i}"), &from, "t", 1).unwrap()).collect();
    let parsed = webhook::parse(batch("1", values).to_string().as_bytes()).unwrap();
    assert_eq!(parsed.message_count(), 3);
}

#[test]
fn merged_values_carry_many_messages_and_each_sender_once() {
    let customer = |i: u32| Customer { wa_id: format!("1555000000{i}"), name: format!("Customer {i}") };
    // Customer 1 writes twice: one contact entry for both messages.
    let values = [1, 2, 1, 3]
        .iter()
        .enumerate()
        .map(|(n, i)| message_value("text", &format!("w{n}"), &customer(*i), "t", 1).unwrap())
        .collect();
    let statuses = (0..2).map(|n| status_value("read", &format!("s{n}"), "15550000001", 1)).collect();
    let body = batch("1", vec![merge_values(values), merge_values(statuses)]);
    let parsed = webhook::parse(body.to_string().as_bytes()).unwrap();
    let (messages, statuses) = (&parsed.changes[0], &parsed.changes[1]);
    assert_eq!(messages.messages.len(), 4);
    assert_eq!(messages.contacts.len(), 3);
    assert!(messages.statuses.is_empty());
    for m in &messages.messages {
        let sender = messages.sender_of(m).unwrap();
        assert_eq!(sender.wa_id, m.from);
        let digit = m.from.as_ref().unwrap().chars().last().unwrap();
        assert_eq!(sender.profile_name.as_deref(), Some(format!("Customer {digit}").as_str()));
    }
    assert_eq!(statuses.statuses.len(), 2);
    assert!(statuses.messages.is_empty());
    assert_eq!(parsed.message_count(), 4);
    assert_eq!(parsed.status_count(), 2);
}

/// The one change of a webhook: its field and value, checked as JSON (the extension's
/// parser is being taught these kinds separately).
fn only_change(body: &Value) -> (&str, &Value) {
    let changes = body["entry"][0]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1);
    (changes[0]["field"].as_str().unwrap(), &changes[0]["value"])
}

const GROUP: &str = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD";

#[test]
fn group_messages_are_messages_with_the_group_id() {
    let from = Customer { wa_id: "16505551234".into(), name: "Sheena".into() };
    let body = envelope("1", group_message_value("text", "wamid.g", GROUP, &from, "hi all", 7).unwrap());
    let (field, value) = only_change(&body);
    assert_eq!(field, "messages");
    let m = &value["messages"][0];
    assert_eq!((m["group_id"].as_str(), m["from"].as_str()), (Some(GROUP), Some("16505551234")));
    assert_eq!(
        (m["type"].as_str(), m["text"]["body"].as_str(), m["timestamp"].as_str()),
        (Some("text"), Some("hi all"), Some("7"))
    );
    assert_eq!(value["contacts"], json!([{ "profile": { "name": "Sheena" }, "wa_id": "16505551234" }]));
    assert!(group_message_value("nonsense", "w", GROUP, &from, "t", 1).is_none());
}

#[test]
fn group_statuses_are_one_per_participant_once_delivered() {
    let participants = ["15550001001", "15550001002"];
    let sent = group_status_value("sent", "wamid.g", GROUP, &participants, 5);
    assert_eq!(
        sent,
        json!({ "statuses": [{ "id": "wamid.g", "status": "sent", "timestamp": "5",
                                   "recipient_id": GROUP, "recipient_type": "group" }] })
    );
    for status in ["delivered", "read"] {
        let value = group_status_value(status, "wamid.g", GROUP, &participants, 6);
        let items = value["statuses"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{status}");
        for (item, participant) in items.iter().zip(participants) {
            assert_eq!(item["recipient_participant_id"], participant);
            assert_eq!((item["recipient_id"].as_str(), item["recipient_type"].as_str()), (Some(GROUP), Some("group")));
            assert_eq!((item["status"].as_str(), item["timestamp"].as_str()), (Some(status), Some("6")));
        }
    }
    let failed = group_status_value("failed", "wamid.g", GROUP, &participants, 7);
    let items = failed["statuses"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["errors"][0]["code"], 131000);
    assert_eq!(items[0]["errors"][0]["title"], "Something went wrong");
    assert!(items[0]["errors"][0]["error_data"]["details"].is_string());
    assert!(items[0].get("recipient_participant_id").is_none());
    assert_eq!(only_change(&envelope("1", failed)).0, "messages");
}

#[test]
fn group_management_webhooks_go_under_their_own_fields() {
    let created = group_lifecycle_value("group_create", GROUP, "Support", 9, false);
    let group = &created["groups"][0];
    assert_eq!(group["type"], "group_create");
    assert_eq!((group["group_id"].as_str(), group["timestamp"].as_str()), (Some(GROUP), Some("9")));
    assert_eq!(group["request_id"], format!("req-{GROUP}"));
    assert_eq!(group["subject"], "Support");
    assert!(group["invite_link"].as_str().unwrap().starts_with("https://chat.whatsapp.com/SIM"));
    assert_eq!(group["join_approval_mode"], "auto_approve");
    assert!(group.get("errors").is_none());
    assert_eq!(only_change(&envelope("1", created.clone())).0, "group_lifecycle_update");

    let failed = group_lifecycle_value("group_create", GROUP, "Support", 9, true);
    let group = &failed["groups"][0];
    assert!(group.get("invite_link").is_none());
    let error = &group["errors"][0];
    assert_eq!(error["code"], 131200);
    assert!(error["message"].is_string() && error["title"].is_string() && error["error_data"]["details"].is_string());

    let deleted = group_lifecycle_value("group_delete", GROUP, "ignored", 10, false);
    assert_eq!(
        deleted,
        json!({ "groups": [{ "timestamp": "10", "group_id": GROUP, "type": "group_delete",
                                 "request_id": format!("req-{GROUP}") }] })
    );
    assert_eq!(only_change(&envelope("1", deleted)).0, "group_lifecycle_update");

    let added = group_participants_value("group_participants_add", GROUP, &["15550001001", "15550001002"], 11);
    assert_eq!(
        added["groups"][0],
        json!({ "timestamp": "11", "group_id": GROUP, "type": "group_participants_add", "reason": "invite_link",
                    "added_participants": [{ "wa_id": "15550001001" }, { "wa_id": "15550001002" }] })
    );
    assert_eq!(only_change(&envelope("1", added)).0, "group_participants_update");
    let removed = group_participants_value("group_participants_remove", GROUP, &["15550001001"], 12);
    assert_eq!(
        removed["groups"][0],
        json!({ "timestamp": "12", "group_id": GROUP, "type": "group_participants_remove",
                    "initiated_by": "participant", "removed_participants": [{ "wa_id": "15550001001" }] })
    );
    assert_eq!(only_change(&envelope("1", removed)).0, "group_participants_update");

    let settings = group_settings_value(GROUP, "New subject", "New description", 13);
    let group = &settings["groups"][0];
    assert_eq!(group["type"], "group_settings_update");
    assert_eq!(group["request_id"], format!("req-{GROUP}"));
    assert_eq!(group["group_subject"], json!({ "text": "New subject", "update_successful": true }));
    assert_eq!(group["group_description"], json!({ "text": "New description", "update_successful": true }));
    assert_eq!(only_change(&envelope("1", settings)).0, "group_settings_update");

    for kind in ["group_suspend", "group_suspend_cleared"] {
        let value = group_suspension_value(kind, GROUP, 14);
        assert_eq!(value, json!({ "groups": [{ "timestamp": "14", "type": kind, "group_id": GROUP }] }));
        assert_eq!(only_change(&envelope("1", value)).0, "group_status_update");
    }
}

#[test]
fn history_chunks_hold_threads_of_both_sides() {
    let message = |wamid: &str, from_business: bool, kind: &str, status: &str| HistoryMessage {
        wamid: wamid.into(),
        from_business,
        kind: kind.into(),
        body: format!("body of {wamid}"),
        timestamp: 100,
        status: status.into(),
    };
    let threads = vec![(
        "16505551234".to_string(),
        vec![
            message("wamid.h1", true, "text", "READ"),
            message("wamid.h2", false, "text", "DELIVERED"),
            message("wamid.h3", false, "media_placeholder", "PLAYED"),
        ],
    )];
    let body = envelope("1", history_value(1, 3, 40, &threads));
    let (field, value) = only_change(&body);
    assert_eq!(field, "history");
    assert_eq!(value["metadata"]["phone_number_id"], "1");
    let chunk = &value["history"][0];
    assert_eq!(chunk["metadata"], json!({ "phase": 1, "chunk_order": 3, "progress": 40 }));
    let thread = &chunk["threads"][0];
    assert_eq!(thread["id"], "16505551234");
    let messages = thread["messages"].as_array().unwrap();
    assert_eq!(
        messages[0],
        json!({ "from": "15550783881", "id": "wamid.h1", "timestamp": "100", "type": "text",
                    "text": { "body": "body of wamid.h1" }, "history_context": { "status": "READ" } })
    );
    assert_eq!(
        (messages[1]["from"].as_str(), messages[1]["history_context"]["status"].as_str()),
        (Some("16505551234"), Some("DELIVERED"))
    );
    assert_eq!(
        messages[2],
        json!({ "from": "16505551234", "id": "wamid.h3", "timestamp": "100", "type": "media_placeholder",
                    "history_context": { "status": "PLAYED" } })
    );

    let declined = envelope("1", history_declined_value());
    let (field, value) = only_change(&declined);
    assert_eq!(field, "history");
    let error = &value["history"][0]["errors"][0];
    assert_eq!(error["code"], 2593109);
    assert_eq!(error["title"], "History sync is turned off by the business from the WhatsApp Business App");
    assert_eq!(error["message"], error["title"]);
    assert_eq!(error["error_data"]["details"], "History sharing is turned off by the business");
}

#[test]
fn history_media_is_an_ordinary_message_under_the_history_field() {
    let from = Customer { wa_id: "16505551234".into(), name: "Sheena".into() };
    let value = history_media_value("wamid.h3", &from, "the photo", 100);
    assert_eq!(field_of(&value), "messages", "its keys alone would say messages");
    let body = envelope_with_field("1", "history", value);
    let (field, value) = only_change(&body);
    assert_eq!(field, "history");
    assert_eq!(value["messaging_product"], "whatsapp");
    let m = &value["messages"][0];
    assert_eq!(
        (m["from"].as_str(), m["id"].as_str(), m["timestamp"].as_str()),
        (Some("16505551234"), Some("wamid.h3"), Some("100"))
    );
    assert_eq!(m["type"], "image");
    let image = &m["image"];
    assert_eq!((image["caption"].as_str(), image["mime_type"].as_str()), (Some("the photo"), Some("image/png")));
    assert!(image["sha256"].is_string() && image["id"].is_string());
}

#[test]
fn contacts_sync_names_each_contact_and_its_action() {
    let value = state_sync_value(&[("16505551234", "Sheena Nelson", "add"), ("16505550000", "Bob", "remove")], 50);
    let body = envelope("1", value);
    let (field, value) = only_change(&body);
    assert_eq!(field, "smb_app_state_sync");
    assert_eq!(
        value["state_sync"][0],
        json!({ "type": "contact",
                    "contact": { "full_name": "Sheena Nelson", "first_name": "Sheena", "phone_number": "16505551234" },
                    "action": "add", "metadata": { "timestamp": "50" } })
    );
    assert_eq!(
        (value["state_sync"][1]["action"].as_str(), value["state_sync"][1]["contact"]["first_name"].as_str()),
        (Some("remove"), Some("Bob"))
    );
}

#[test]
fn a_batch_of_new_kinds_keeps_each_field() {
    let body = batch(
        "1",
        vec![
            group_suspension_value("group_suspend", GROUP, 1),
            history_declined_value(),
            state_sync_value(&[("1", "A", "add")], 1),
            status_value("read", "w", "1", 1),
        ],
    );
    let fields: Vec<&str> =
        body["entry"][0]["changes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["group_status_update", "history", "smb_app_state_sync", "messages"]);
}

#[test]
fn structured_replies_and_marketing_preferences_parse_with_the_extensions_parser() {
    let from = Customer { wa_id: "16505551234".into(), name: "Sheena Nelson".into() };
    let flow = message_value("flow_reply", "wamid.f", &from, "window seat", 1).unwrap();
    let address = message_value("address_reply", "wamid.a", &from, "Wework", 1).unwrap();
    let permission = message_value("call_permission_reply", "wamid.c", &from, "", 1).unwrap();
    let body = batch("1", vec![flow, address, permission]).to_string();
    let parsed = whatsapp_cloud::webhook::parse(body.as_bytes()).unwrap();
    let texts: Vec<_> = parsed.changes.iter().map(|c| c.messages[0].text.clone().unwrap()).collect();
    assert_eq!(texts[0], "Flow reply: date: 2026-12-24, guests: 2, notes: window seat");
    assert!(texts[1].starts_with("Address: address: Wework, city: Mumbai"), "{}", texts[1]);
    assert_eq!(texts[2], "Call permission accepted");
    let reply = parsed.changes[0].messages[0].structured_reply.clone().unwrap();
    assert_eq!(reply.flow_token.as_deref(), Some("sim-flow-token"));

    let stop = user_preferences_value(&from, None, "stop", 1739321024);
    let resume = user_preferences_value(&from, Some("US.1"), "resume", 1739321084);
    let notice = preference_system_value("wamid.s", &from, "stop", 1739321090);
    let body = batch("1", vec![stop, resume, notice]).to_string();
    let parsed = whatsapp_cloud::webhook::parse(body.as_bytes()).unwrap();
    assert_eq!(parsed.changes[0].field, "user_preferences");
    let prefs: Vec<_> = parsed.changes.iter().flat_map(|c| c.user_preferences.clone()).collect();
    let words: Vec<_> = prefs.iter().map(|p| (p.preference.as_meta(), p.timestamp.unwrap())).collect();
    assert_eq!(words, [("stop", 1739321024), ("resume", 1739321084), ("stop", 1739321090)]);
    assert_eq!(prefs[1].user_id.as_deref(), Some("US.1"));
    assert!(parsed.changes.iter().all(|c| c.rejected.is_empty()));
}

#[test]
fn a_131050_failure_says_the_customer_stopped_marketing() {
    let value = failed_status_value("wamid.x", "16505551234", 131050, 1);
    let parsed = whatsapp_cloud::webhook::parse(batch("1", vec![value]).to_string().as_bytes()).unwrap();
    let status = &parsed.changes[0].statuses[0];
    assert_eq!((status.status.as_str(), status.error_code), ("failed", Some(131050)));
}
