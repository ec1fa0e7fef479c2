//! Inbound content: every kind of message into queryable columns, with its context
//! (forwarding, referral, reactions and their removal, revokes, edits), and calls.

use e2e::wa_sim::payloads::{self, Customer, MESSAGE_KINDS};
use e2e::{cluster, messages_of, one_message, value_with};
use serde_json::{Value, json};

#[test]
fn every_kind_is_stored_with_its_queryable_columns() {
    let ch = cluster().add_channel("kinds");
    let from = Customer { wa_id: "16505558001".into(), name: "Kim".into() };
    let values = MESSAGE_KINDS
        .iter()
        .map(|k| payloads::message_value(k, &format!("wamid.kind.{k}"), &from, "hello", 1749416383).unwrap())
        .collect();
    assert_eq!(ch.post_signed(&payloads::batch(&ch.phone_number_id, values)).status, 200);
    assert_eq!(messages_of(&ch, "m.id").len(), MESSAGE_KINDS.len(), "one row per kind, none refused");

    let image = one_message(&ch, "wamid.kind.image", "type, body, media_id, media_mime_type, media_sha256");
    assert_eq!(image.get::<_, String>(0), "image");
    assert_eq!(image.get::<_, String>(1), "hello");
    assert_eq!(image.get::<_, String>(2), e2e::wa_sim::demo_media::id("image/png"));
    assert_eq!(image.get::<_, String>(3), "image/png");
    let png = e2e::wa_sim::demo_media::bytes("image/png");
    assert_eq!(image.get::<_, String>(4), e2e::wa_sim::graph::sha256_base64(&png));
    let voice = one_message(&ch, "wamid.kind.voice", "type, voice, media_mime_type");
    assert_eq!((voice.get::<_, String>(0), voice.get::<_, bool>(1)), ("audio".into(), true));
    assert_eq!(one_message(&ch, "wamid.kind.document", "media_filename").get::<_, String>(0), "invoice.pdf");
    let loc = one_message(&ch, "wamid.kind.location", "latitude, longitude, location_name");
    assert_eq!((loc.get::<_, f64>(0), loc.get::<_, f64>(1)), (37.4851, -122.1483));
    assert_eq!(loc.get::<_, String>(2), "Meta HQ");
    let reply = one_message(&ch, "wamid.kind.button_reply", "interactive_reply_id, body, reply_to_wamid");
    assert_eq!(reply.get::<_, String>(0), "yes");
    assert_eq!(reply.get::<_, String>(1), "hello");
    assert!(reply.get::<_, Option<String>>(2).is_some());
    assert_eq!(one_message(&ch, "wamid.kind.button", "button_payload").get::<_, String>(0), "CONFIRM");
    let reaction = one_message(&ch, "wamid.kind.reaction", "reaction_to_wamid, reaction_emoji");
    assert!(reaction.get::<_, String>(0).starts_with("wamid."));
    assert_eq!(reaction.get::<_, String>(1), "👍");
    let order = one_message(&ch, "wamid.kind.order", "order_items -> 0 ->> 'product_retailer_id', body");
    assert_eq!((order.get::<_, String>(0), order.get::<_, String>(1)), ("SKU-1".into(), "hello".into()));
    let shared = one_message(&ch, "wamid.kind.contacts", "shared_contacts -> 0 -> 'name' ->> 'formatted_name'");
    assert_eq!(shared.get::<_, String>(0), "John Smith");
    assert_eq!(one_message(&ch, "wamid.kind.unsupported", "type").get::<_, String>(0), "unsupported");
}

#[test]
fn context_forwarding_referral_reaction_removal_revoke_and_edit() {
    let ch = cluster().add_channel("context");
    let contacts = json!([{ "profile": { "name": "Lee" }, "wa_id": "16505558002" }]);
    let base = |id: &str, ts: &str| json!({ "from": "16505558002", "id": id, "timestamp": ts });
    let with = |mut m: Value, extra: Value| {
        m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        m
    };
    let messages = json!([
        with(
            base("wamid.ctx.1", "100"),
            json!({ "type": "text", "text": { "body": "original" },
            "referral": { "source_url": "https://fb.me/ad", "source_type": "ad", "source_id": "42", "headline": "Sale" } })
        ),
        with(
            base("wamid.ctx.2", "101"),
            json!({ "type": "text", "text": { "body": "fwd" }, "context": { "forwarded": true } })
        ),
        with(
            base("wamid.ctx.3", "102"),
            json!({ "type": "text", "text": { "body": "fwd many" }, "context": { "frequently_forwarded": true } })
        ),
        with(
            base("wamid.ctx.4", "103"),
            json!({ "type": "text", "text": { "body": "quote" }, "context": { "from": "15550783881", "id": "wamid.ctx.1" } })
        ),
        with(base("wamid.ctx.5", "104"), json!({ "type": "reaction", "reaction": { "message_id": "wamid.ctx.1" } })),
        with(
            base("wamid.ctx.6", "105"),
            json!({ "type": "edit", "edit": { "original_message_id": "wamid.ctx.2",
            "message": { "type": "text", "text": { "body": "fwd, edited" } } } })
        ),
        with(
            base("wamid.ctx.7", "106"),
            json!({ "type": "revoke", "revoke": { "original_message_id": "wamid.ctx.3" } })
        ),
        with(base("wamid.ctx.8", "107"), json!({ "type": "location", "location": { "latitude": "not a number" } })),
    ]);
    assert_eq!(ch.post_signed(&value_with(&ch, contacts, messages)).status, 200);
    assert_eq!(one_message(&ch, "wamid.ctx.1", "referral ->> 'headline'").get::<_, String>(0), "Sale");
    let fwd = one_message(&ch, "wamid.ctx.2", "forwarded, frequently_forwarded, edited_at IS NOT NULL");
    assert_eq!((fwd.get::<_, bool>(0), fwd.get::<_, bool>(1), fwd.get::<_, bool>(2)), (true, false, true));
    let many = one_message(&ch, "wamid.ctx.3", "forwarded, frequently_forwarded, revoked_at IS NOT NULL");
    assert_eq!((many.get::<_, bool>(0), many.get::<_, bool>(1), many.get::<_, bool>(2)), (true, true, true));
    assert_eq!(one_message(&ch, "wamid.ctx.4", "reply_to_wamid").get::<_, String>(0), "wamid.ctx.1");
    let removal = one_message(&ch, "wamid.ctx.5", "reaction_to_wamid, reaction_emoji");
    assert_eq!((removal.get::<_, String>(0), removal.get::<_, Option<String>>(1)), ("wamid.ctx.1".into(), None));
    let edit = one_message(&ch, "wamid.ctx.6", "original_wamid, body");
    assert_eq!((edit.get::<_, String>(0), edit.get::<_, String>(1)), ("wamid.ctx.2".into(), "fwd, edited".into()));
    // A malformed field is kept raw; the message is not refused for it.
    let odd = one_message(&ch, "wamid.ctx.8", "latitude, payload -> 'location' ->> 'latitude'");
    assert_eq!((odd.get::<_, Option<f64>>(0), odd.get::<_, String>(1)), (None, "not a number".into()));
}

#[test]
fn calls_become_one_row_each_with_missed_ones_marked_notified_and_opening_the_window() {
    let ch = cluster().add_channel("calls");
    let mut listener = e2e::Listener::new(&["wa_call"]);
    let post = |value: Value| assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, value)).status, 200);
    // An answered call: rings, then ends after 95 s; the end is redelivered.
    post(payloads::call_value("wacid.answered", "15550005001", "connect", None, None, 1_767_225_600));
    let end =
        payloads::call_value("wacid.answered", "15550005001", "terminate", Some("COMPLETED"), Some(95), 1_767_225_700);
    post(end.clone());
    post(end);
    // A missed one: it ends without being answered, and its connect arrives late.
    post(payloads::call_value("wacid.missed", "15550005002", "terminate", Some("FAILED"), None, 1_767_225_800));
    post(payloads::call_value("wacid.missed", "15550005002", "connect", None, None, 1_767_225_790));
    let mut db = cluster().connect();
    // (call_id, direction, status, missed, duration_seconds, rang, the customer's wa_id)
    type CallRow = (String, String, String, bool, Option<i32>, bool, String);
    let calls: Vec<CallRow> = db
        .query(
            "SELECT w.call_id, w.direction, w.status, w.missed, w.duration_seconds, w.rang_at IS NOT NULL, k.wa_id
               FROM wa_calls w JOIN wa_contacts k ON k.id = w.contact_id JOIN wa_channels c ON c.id = w.channel_id
              WHERE c.name = $1 ORDER BY w.call_id",
            &[&ch.name],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)))
        .collect();
    assert_eq!(
        calls,
        vec![
            (
                "wacid.answered".into(),
                "inbound".into(),
                "completed".into(),
                false,
                Some(95),
                true,
                "15550005001".into()
            ),
            ("wacid.missed".into(), "inbound".into(), "failed".into(), true, None, true, "15550005002".into()),
        ]
    );
    // Notified once per change, by the call's row: ring and end of the first, end and late ring
    // of the second; the redelivered end not again (the drain reads everything notified so far).
    let mut note = |call_id: &str| -> Value {
        let r = db
            .query_one(
                "SELECT id, contact_id FROM wa_calls WHERE channel_id = $1 AND call_id = $2",
                &[&ch.id, &call_id],
            )
            .unwrap();
        json!({"id": r.get::<_, i64>(0), "channel_id": ch.id, "contact_id": r.get::<_, i64>(1)})
    };
    let (answered, missed) = (note("wacid.answered"), note("wacid.missed"));
    let notes: Vec<Value> = listener.drain("wa_call").into_iter().filter(|p| p["channel_id"] == ch.id).collect();
    assert_eq!(notes, [answered.clone(), answered, missed.clone(), missed]);
    // A customer's call opens the 24-hour window, as a message does.
    let window: bool = db
        .query_one(
            "SELECT k.last_inbound_at = to_timestamp(1767225800) FROM wa_contacts k JOIN wa_channels c ON c.id = k.channel_id
              WHERE c.name = $1 AND k.wa_id = '15550005002'",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    assert!(window);
}
