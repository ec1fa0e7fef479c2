//! Inbound content: every kind of message into queryable columns, senders with and without a
//! phone number, identity changes, routing across the numbers of one app, per-item isolation,
//! the conversations and health views, and replay.

use e2e::wa_sim::payloads::{self, Customer, MESSAGE_KINDS};
use e2e::{Channel, cluster, http_get, http_post};
use serde_json::{Value, json};

fn messages_of(ch: &Channel, columns: &str) -> Vec<postgres::Row> {
    let sql = format!(
        "SELECT {columns} FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = $1 ORDER BY m.id"
    );
    cluster().connect().query(&sql, &[&ch.name]).unwrap()
}

fn one_message(ch: &Channel, wamid: &str, columns: &str) -> postgres::Row {
    let sql = format!(
        "SELECT {columns} FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = $1 AND m.wamid = $2"
    );
    cluster().connect().query_one(&sql, &[&ch.name, &wamid]).unwrap()
}

fn value_with(ch: &Channel, contacts: Value, messages: Value) -> Value {
    payloads::envelope(&ch.phone_number_id, json!({ "contacts": contacts, "messages": messages }))
}

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
fn senders_without_a_phone_number_and_identity_changes_update_the_contact() {
    let ch = cluster().add_channel("bsuid");
    // A username user: no wa_id, no from; only the business-scoped user id.
    let username_user = value_with(
        &ch,
        json!([{ "profile": { "name": "Max", "username": "@max" }, "user_id": "US.13491208655302741918" }]),
        json!([{ "from_user_id": "US.13491208655302741918", "id": "wamid.bsuid.1", "timestamp": "100", "type": "text", "text": { "body": "hi" } }]),
    );
    assert_eq!(ch.post_signed(&username_user).status, 200);
    let mut db = cluster().connect();
    let contact = |db: &mut postgres::Client, col: &str, val: &str| -> Option<postgres::Row> {
        db.query_opt(
            &format!("SELECT k.wa_id, k.user_id, k.username, k.profile_name FROM wa_contacts k JOIN wa_channels c ON c.id = k.channel_id WHERE c.name = $1 AND k.{col} = $2"),
            &[&ch.name, &val],
        )
        .unwrap()
    };
    let max = contact(&mut db, "user_id", "US.13491208655302741918").expect("contact keyed by BSUID");
    assert_eq!((max.get::<_, Option<String>>(0), max.get::<_, String>(2)), (None, "@max".into()));

    // A phone user changes number: the same contact now has the new wa_id.
    assert_eq!(
        ch.post_signed(&payloads::text_message(
            &ch.phone_number_id,
            "wamid.bsuid.2",
            "16505558003",
            "Ann",
            "hello",
            100
        ))
        .status,
        200
    );
    let from = Customer { wa_id: "16505558003".into(), name: "Ann".into() };
    let change = payloads::message_value("system", "wamid.bsuid.3", &from, "", 101).unwrap();
    assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, change)).status, 200);
    assert!(contact(&mut db, "wa_id", "16505558003").is_none());
    let ann = contact(&mut db, "wa_id", "15550009999").expect("contact moved to the new number");
    assert_eq!(ann.get::<_, String>(3), "Ann");
    let system_type: String =
        db.query_one("SELECT system_type FROM wa_messages WHERE wamid = 'wamid.bsuid.3'", &[]).unwrap().get(0);
    assert_eq!(system_type, "user_changed_number");
}

#[test]
fn updates_for_another_number_of_the_same_app_are_routed_to_its_channel() {
    let a = cluster().add_channel("route-a");
    let mut b = cluster().add_channel("route-b");
    // Channel b belongs to the same Meta app: same app secret, so Meta may post its updates to a's URL.
    b.app_secret = a.app_secret.clone();
    cluster()
        .connect()
        .execute(
            "UPDATE wa_channel_secrets s SET app_secret = $1 FROM wa_channels c WHERE c.id = s.channel_id AND c.name = $2",
            &[&a.app_secret, &b.name],
        )
        .unwrap();
    let for_b = payloads::text_message(&b.phone_number_id, "wamid.route.b", "16505558004", "Bo", "to b", 100);
    let nobody = payloads::text_message("999000111", "wamid.route.nobody", "16505558004", "Bo", "to nobody", 100);
    let for_a = payloads::text_message(&a.phone_number_id, "wamid.route.a", "16505558004", "Bo", "to a", 100);
    let mut payload = for_b.clone();
    let entries = payload["entry"].as_array_mut().unwrap();
    entries.push(nobody["entry"][0].clone());
    entries.push(for_a["entry"][0].clone());
    assert_eq!(a.post_signed(&payload).status, 200, "unknown numbers are kept raw and still answered 200");
    assert_eq!(messages_of(&b, "m.wamid").iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>(), ["wamid.route.b"]);
    assert_eq!(messages_of(&a, "m.wamid").iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>(), ["wamid.route.a"]);
    let health = cluster()
        .connect()
        .query_one("SELECT last_unrouted_phone_number_id, counts ->> 'unrouted', counts ->> 'partial' FROM wa_channel_health WHERE channel = $1", &[&a.name])
        .unwrap();
    assert_eq!(health.get::<_, String>(0), "999000111");
    assert_eq!((health.get::<_, String>(1), health.get::<_, String>(2)), ("1".into(), "1".into()));
}

#[test]
fn one_bad_item_rolls_back_alone() {
    let ch = cluster().add_channel("isolate");
    // A type name so long that its NOTIFY payload exceeds Postgres' 8000-byte limit: that one
    // item fails inside Postgres; the messages around it must still be stored.
    let huge_type = "x".repeat(9000);
    let messages = json!([
        { "from": "16505558005", "id": "wamid.iso.1", "timestamp": "1", "type": "text", "text": { "body": "before" } },
        { "from": "16505558005", "id": "wamid.iso.2", "timestamp": "2", "type": huge_type },
        { "from": "16505558005", "id": "wamid.iso.3", "timestamp": "3", "type": "text", "text": { "body": "after" } },
    ]);
    let contacts = json!([{ "profile": { "name": "Iso" }, "wa_id": "16505558005" }]);
    assert_eq!(ch.post_signed(&value_with(&ch, contacts, messages)).status, 200);
    let stored: Vec<String> = messages_of(&ch, "m.wamid").iter().map(|r| r.get(0)).collect();
    assert_eq!(stored, ["wamid.iso.1", "wamid.iso.3"]);
    let (outcome, error): (String, String) = {
        let r = cluster()
            .connect()
            .query_one("SELECT e.outcome, e.error FROM wa_webhook_events e JOIN wa_channels c ON c.id = e.channel_id WHERE c.name = $1", &[&ch.name])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(outcome, "partial");
    assert!(error.contains("message wamid.iso.2"), "{error}");
}

#[test]
fn concurrent_redeliveries_store_one_row() {
    let ch = cluster().add_channel("concurrent");
    let payload = payloads::text_message(&ch.phone_number_id, "wamid.conc.1", "16505558006", "Cy", "once", 1);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| ch.post_signed(&payload).status)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(messages_of(&ch, "m.id").len(), 1);
}

#[test]
fn conversations_show_last_message_unread_count_and_the_24_hour_window() {
    let ch = cluster().add_channel("conv");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for (i, text) in ["one", "two"].iter().enumerate() {
        let m = payloads::text_message(
            &ch.phone_number_id,
            &format!("wamid.conv.{i}"),
            "16505558007",
            "Dee",
            text,
            now - 60,
        );
        assert_eq!(ch.post_signed(&m).status, 200);
    }
    let mut db = cluster().connect();
    let row = |db: &mut postgres::Client| {
        db.query_one(
            "SELECT last_body, unread_count, window_open, window_closes_at > now() + interval '23 hours'
               FROM wa_conversations WHERE channel = $1 AND wa_id = '16505558007'",
            &[&ch.name],
        )
        .unwrap()
    };
    let r = row(&mut db);
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, i32>(1), r.get::<_, bool>(2), r.get::<_, bool>(3)),
        ("two".into(), 2, true, true)
    );
    db.execute("SELECT wa_send_text($1, '16505558007', 'answer')", &[&ch.name]).unwrap();
    let r = row(&mut db);
    assert_eq!((r.get::<_, String>(0), r.get::<_, i32>(1)), ("answer".into(), 0));
    // A customer who wrote 25 hours ago: the window is closed.
    let old =
        payloads::text_message(&ch.phone_number_id, "wamid.conv.old", "16505558008", "Eli", "late", now - 25 * 3600);
    assert_eq!(ch.post_signed(&old).status, 200);
    let open: bool = db
        .query_one("SELECT window_open FROM wa_conversations WHERE channel = $1 AND wa_id = '16505558008'", &[&ch.name])
        .unwrap()
        .get(0);
    assert!(!open);
}

#[test]
fn health_view_answers_the_seeds_common_issues() {
    let ch = cluster().add_channel("health");
    let url = cluster().webhook_url(&ch.name);
    assert_eq!(
        http_get(&format!("{url}?hub.mode=subscribe&hub.verify_token={}&hub.challenge=1", ch.verify_token)).status,
        200
    );
    assert_eq!(http_get(&format!("{url}?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1")).status, 403);
    let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
    let wrong = e2e::whatsapp_cloud::signature::sign(b"ffffffffffffffffffffffffffffffff", body);
    assert_eq!(http_post(&url, body, Some(&wrong)).status, 401);
    assert_eq!(
        ch.post_signed(&payloads::text_message(&ch.phone_number_id, "wamid.health.1", "16505558009", "H", "ok", 1))
            .status,
        200
    );
    let row = e2e::poll(|| {
        let r = cluster()
            .connect()
            .query_one(
                "SELECT last_verified_handshake_at IS NOT NULL, last_verified_post_at IS NOT NULL,
                        last_signature_failure_cause, last_verify_token_mismatch_at IS NOT NULL, counts
                   FROM wa_channel_health WHERE channel = $1",
                &[&ch.name],
            )
            .unwrap();
        // Counters from rejected requests are written by the listener's next batch.
        r.get::<_, Option<String>>(2).is_some().then_some(r)
    })
    .expect("the signature failure is counted");
    assert!(row.get::<_, bool>(0) && row.get::<_, bool>(1) && row.get::<_, bool>(3));
    assert!(row.get::<_, String>(2).contains("wrong app_secret"));
    let counts: Value = row.get(4);
    assert_eq!((counts["stored"].as_i64(), counts["signature_mismatch"].as_i64()), (Some(1), Some(1)));
}

#[test]
fn replay_restores_what_is_missing_and_adds_nothing_twice() {
    let ch = cluster().add_channel("replay");
    for i in 0..3 {
        let m = payloads::text_message(&ch.phone_number_id, &format!("wamid.replay.{i}"), "16505558010", "Ray", "r", 1);
        assert_eq!(ch.post_signed(&m).status, 200);
    }
    let mut db = cluster().connect();
    // As if an older version had not stored this one.
    db.execute("DELETE FROM wa_messages WHERE wamid = 'wamid.replay.1'", &[]).unwrap();
    let range: (i64, i64) = {
        let r = db
            .query_one("SELECT min(e.id), max(e.id) FROM wa_webhook_events e JOIN wa_channels c ON c.id = e.channel_id WHERE c.name = $1", &[&ch.name])
            .unwrap();
        (r.get(0), r.get(1))
    };
    let once = db
        .query_one(
            "SELECT events, new_messages FROM wa_replay_webhook_events($1, $2, $3)",
            &[&range.0, &range.1, &ch.name],
        )
        .unwrap();
    assert_eq!((once.get::<_, i64>(0), once.get::<_, i64>(1)), (3, 1));
    let twice = db
        .query_one("SELECT new_messages, new_statuses FROM wa_replay_webhook_events(channel => $1)", &[&ch.name])
        .unwrap();
    assert_eq!((twice.get::<_, i64>(0), twice.get::<_, i64>(1)), (0, 0));
    assert_eq!(messages_of(&ch, "m.id").len(), 3);
}

#[test]
fn a_sender_whose_two_ids_belong_to_two_contacts_is_still_stored() {
    let ch = cluster().add_channel("twoids");
    // First known by phone only, then (as a username user) by BSUID only: two contacts.
    let by_phone = value_with(
        &ch,
        json!([{ "profile": { "name": "Zoe" }, "wa_id": "16505558011" }]),
        json!([{ "from": "16505558011", "id": "wamid.twoids.1", "timestamp": "1", "type": "text", "text": { "body": "a" } }]),
    );
    let by_bsuid = value_with(
        &ch,
        json!([{ "profile": { "name": "Zoe" }, "user_id": "US.2001" }]),
        json!([{ "from_user_id": "US.2001", "id": "wamid.twoids.2", "timestamp": "2", "type": "text", "text": { "body": "b" } }]),
    );
    // Then a message that carries both ids: it must not fail on the unique user_id.
    let both = value_with(
        &ch,
        json!([{ "profile": { "name": "Zoe" }, "wa_id": "16505558011", "user_id": "US.2001" }]),
        json!([{ "from": "16505558011", "from_user_id": "US.2001", "id": "wamid.twoids.3", "timestamp": "3", "type": "text", "text": { "body": "c" } }]),
    );
    for p in [&by_phone, &by_bsuid, &both, &both] {
        assert_eq!(ch.post_signed(p).status, 200);
    }
    let stored: Vec<String> = messages_of(&ch, "m.wamid").iter().map(|r| r.get(0)).collect();
    assert_eq!(stored, ["wamid.twoids.1", "wamid.twoids.2", "wamid.twoids.3"]);
    let outcome: Vec<String> = cluster()
        .connect()
        .query(
            "SELECT e.outcome FROM wa_webhook_events e JOIN wa_channels c ON c.id = e.channel_id WHERE c.name = $1",
            &[&ch.name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(outcome.iter().all(|o| o == "stored"), "{outcome:?}");
}

#[test]
fn a_user_changed_user_id_system_message_keeps_the_old_bsuid_reaching_the_contact() {
    let ch = cluster().add_channel("bsuid-system");
    let message = |wamid: &str, uid: &str, m: Value| {
        let mut m = m;
        m["id"] = json!(wamid);
        m["timestamp"] = json!("1767225600");
        m["from_user_id"] = json!(uid);
        value_with(&ch, json!([{ "profile": { "name": "Bo" }, "user_id": uid }]), json!([m]))
    };
    let hello = json!({ "type": "text", "text": { "body": "hello" } });
    assert_eq!(ch.post_signed(&message("wamid.bsuidsys.1", "US.BO.OLD", hello.clone())).status, 200);
    // Meta says, as a system message, that Bo's business-scoped id is now another.
    // (System messages come without a contacts array.)
    let changed = json!({ "type": "system", "id": "wamid.bsuidsys.2", "timestamp": "1767225650", "from_user_id": "US.BO.OLD",
        "system": { "body": "Bo's id changed", "type": "user_changed_user_id", "user_id": "US.BO.NEW" } });
    assert_eq!(ch.post_signed(&value_with(&ch, json!([]), json!([changed]))).status, 200);
    // Later messages under the new id and (redelivered or from an old client) the old one.
    assert_eq!(ch.post_signed(&message("wamid.bsuidsys.3", "US.BO.NEW", hello.clone())).status, 200);
    assert_eq!(ch.post_signed(&message("wamid.bsuidsys.4", "US.BO.OLD", hello)).status, 200);
    let mut db = cluster().connect();
    let contacts: Vec<(i64, Option<String>)> = db
        .query(
            "SELECT DISTINCT k.id, k.user_id FROM wa_messages m JOIN wa_contacts k ON k.id = m.contact_id
              WHERE m.wamid LIKE 'wamid.bsuidsys.%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(contacts.len(), 1, "the four messages reached {} contacts: {contacts:?}", contacts.len());
    assert_eq!(contacts[0].1.as_deref(), Some("US.BO.NEW"));
    let former: Vec<String> = db
        .query("SELECT user_id FROM wa_contact_former_ids WHERE contact_id = $1", &[&contacts[0].0])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(former, vec!["US.BO.OLD".to_string()]);
}

#[test]
fn a_user_id_update_moves_the_contact_and_both_bsuids_reach_it() {
    let ch = cluster().add_channel("bsuid-update");
    let text = |wamid: &str, contact: Value, from: Value| {
        let mut m = json!({ "id": wamid, "timestamp": "1767225600", "type": "text", "text": { "body": wamid } });
        for (k, v) in from.as_object().unwrap() {
            m[k] = v.clone();
        }
        value_with(&ch, json!([contact]), json!([m]))
    };
    // Known by phone number and BSUID.
    let first = text(
        "wamid.bsuidupd.1",
        json!({ "profile": { "name": "Ana" }, "wa_id": "15550004001", "user_id": "US.OLD" }),
        json!({ "from": "15550004001", "from_user_id": "US.OLD" }),
    );
    assert_eq!(ch.post_signed(&first).status, 200);
    // Meta gives Ana a new BSUID (and parent).
    let mut update = payloads::envelope(
        &ch.phone_number_id,
        json!({ "user_id_update": [{
            "wa_id": "15550004001",
            "user_id": { "previous": "US.OLD", "current": "US.NEW" },
            "parent_user_id": { "previous": "US.P.OLD", "current": "US.P.NEW" },
            "timestamp": "1767225700"
        }] }),
    );
    update["entry"][0]["changes"][0]["field"] = json!("user_id_update");
    assert_eq!(ch.post_signed(&update).status, 200);
    // Then messages under the new BSUID only, and under the old one only.
    for (wamid, uid) in [("wamid.bsuidupd.2", "US.NEW"), ("wamid.bsuidupd.3", "US.OLD")] {
        let m = text(wamid, json!({ "profile": { "name": "Ana" }, "user_id": uid }), json!({ "from_user_id": uid }));
        assert_eq!(ch.post_signed(&m).status, 200);
    }
    let mut db = cluster().connect();
    let contacts: Vec<(i64, Option<String>, Option<String>)> = db
        .query(
            "SELECT DISTINCT k.id, k.user_id, k.parent_user_id FROM wa_messages m JOIN wa_contacts k ON k.id = m.contact_id
              WHERE m.wamid IN ('wamid.bsuidupd.1', 'wamid.bsuidupd.2', 'wamid.bsuidupd.3')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(contacts.len(), 1, "the three messages reached {} contacts: {contacts:?}", contacts.len());
    assert_eq!((contacts[0].1.as_deref(), contacts[0].2.as_deref()), (Some("US.NEW"), Some("US.P.NEW")));
    let former: Vec<String> = db
        .query("SELECT user_id FROM wa_contact_former_ids WHERE contact_id = $1", &[&contacts[0].0])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(former, vec!["US.OLD".to_string()]);
    // A redelivered update changes nothing.
    assert_eq!(ch.post_signed(&update).status, 200);
    let n: i64 = db
        .query_one(
            "SELECT count(*) FROM wa_contacts WHERE channel_id = (SELECT id FROM wa_channels WHERE name = $1)",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
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
    let calls: Vec<(String, String, String, bool, Option<i32>, bool, String)> = db
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
    // Notified once per change: ring and end of the first, end and late ring of the second.
    let mut events = Vec::new();
    for _ in 0..4 {
        let (_, n) = listener.next_matching(|_, p| p["channel"] == ch.name.as_str()).expect("a wa_call notification");
        events.push((
            n["call_id"].as_str().unwrap().to_string(),
            n["event"].as_str().unwrap().to_string(),
            n["missed"].as_bool().unwrap(),
        ));
    }
    assert_eq!(
        events,
        vec![
            ("wacid.answered".into(), "connect".into(), false),
            ("wacid.answered".into(), "terminate".into(), false),
            ("wacid.missed".into(), "terminate".into(), true),
            ("wacid.missed".into(), "connect".into(), true),
        ]
    );
    // The redelivered end was not notified again: a marker sent now comes next.
    cluster().connect().batch_execute("NOTIFY wa_call, '{\"channel\": \"marker\"}'").unwrap();
    let (_, next) = listener.next_matching(|_, _| true).unwrap();
    assert_eq!(next["channel"], "marker");
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
