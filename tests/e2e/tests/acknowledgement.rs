//! A webhook is acknowledged (200) only when what it holds is kept: every item stored, or
//! refused for its own content (which Meta resending the same bytes cannot fix). An item that
//! fails for a database reason (here a user's trigger) makes the POST 500, so Meta sends it
//! again; what was stored stays stored, and the event is kept, `incomplete`, past its
//! retention, until a replay (the maintenance worker's, every minute and at a reload, or
//! `wa_replay_webhook_events()`) has stored the rest. One unreadable string does not cost its
//! neighbours either.

use e2e::{Channel, Cluster, cluster, http_post, poll};
use postgres::Client;
use serde_json::json;
use std::time::Duration;

/// A signed POST of these texts, as (wamid, body), from one customer.
fn texts(ch: &Channel, texts: &[(&str, &str)]) -> serde_json::Value {
    let messages: Vec<_> = texts
        .iter()
        .map(|(wamid, body)| {
            json!({ "from": "16505557001", "id": wamid, "timestamp": "1767000000", "type": "text", "text": { "body": body } })
        })
        .collect();
    e2e::wa_sim::payloads::envelope(
        &ch.phone_number_id,
        json!({
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550001111", "phone_number_id": ch.phone_number_id },
            "contacts": [{ "profile": { "name": "Ada" }, "wa_id": "16505557001" }],
            "messages": messages,
        }),
    )
}

fn count(db: &mut Client, sql: &str, arg: &str) -> i64 {
    db.query_one(sql, &[&arg]).unwrap().get(0)
}

fn stored(db: &mut Client, wamid: &str) -> i64 {
    count(db, "SELECT count(*) FROM wa_messages WHERE wamid = $1", wamid)
}

fn incomplete_events(db: &mut Client, channel: &str) -> i64 {
    count(db, "SELECT incomplete_webhook_events FROM wa_channel_health WHERE channel = $1", channel)
}

/// A BEFORE INSERT trigger on wa_messages that refuses this channel's messages whose body is
/// `refused`, as a user's business rule might.
fn refuse_in_trigger(db: &mut Client, ch: &Channel, tag: &str) {
    db.batch_execute(&format!(
        "CREATE FUNCTION refuse_{tag}() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.body = 'refused' AND NEW.channel_id = (SELECT id FROM public.wa_channels WHERE name = '{name}') THEN
                 RAISE EXCEPTION 'a user trigger refuses this row';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_{tag} BEFORE INSERT ON wa_messages FOR EACH ROW EXECUTE FUNCTION refuse_{tag}();",
        name = ch.name
    ))
    .unwrap();
}

#[test]
fn an_item_a_trigger_refuses_gets_500_keeps_the_rest_and_is_stored_on_redelivery() {
    let ch = cluster().add_channel("ack");
    let mut db = cluster().connect();
    refuse_in_trigger(&mut db, &ch, "ack");
    let payload = texts(&ch, &[("wamid.ack.kept", "kept"), ("wamid.ack.refused", "refused")]);

    let answer = ch.post_signed(&payload);
    assert_eq!(answer.status, 500, "a database refusal is not acknowledged: {answer:?}");
    assert_eq!(stored(&mut db, "wamid.ack.kept"), 1, "what could be stored stays stored");
    assert_eq!(stored(&mut db, "wamid.ack.refused"), 0);
    assert_eq!(incomplete_events(&mut db, &ch.name), 1);
    let error: String = db
        .query_one(
            "SELECT e.error FROM wa_webhook_events e JOIN wa_channels c ON c.id = e.channel_id
              WHERE c.name = $1 AND e.outcome = 'incomplete'",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    assert!(error.contains("wamid.ack.refused") && error.contains("a user trigger refuses this row"), "{error}");
    let counted: f64 = db
        .query_one(
            "SELECT value FROM wa_metrics WHERE metric = 'whatsapp_channel_webhook_posts_total'
               AND labels ->> 'channel' = $1 AND labels ->> 'outcome' = 'incomplete'",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    assert_eq!(counted, 1.0);

    // The same POST again, as Meta redelivers it, while the trigger still refuses: 500 again.
    assert_eq!(ch.post_signed(&payload).status, 500);

    // The trigger is fixed; Meta's next redelivery is acknowledged, and each message is there once.
    db.batch_execute("DROP TRIGGER refuse_ack ON wa_messages; DROP FUNCTION refuse_ack()").unwrap();
    assert_eq!(ch.post_signed(&payload).status, 200);
    assert_eq!(stored(&mut db, "wamid.ack.kept"), 1);
    assert_eq!(stored(&mut db, "wamid.ack.refused"), 1);

    // The events that were answered 500 are resolved by a replay, which adds nothing now.
    assert_eq!(incomplete_events(&mut db, &ch.name), 2);
    let replayed: i64 =
        db.query_one("SELECT new_messages FROM wa_replay_webhook_events(channel => $1)", &[&ch.name]).unwrap().get(0);
    assert_eq!(replayed, 0);
    assert_eq!(incomplete_events(&mut db, &ch.name), 0);
    assert_eq!(stored(&mut db, "wamid.ack.refused"), 1);
}

#[test]
fn a_refused_item_of_its_own_content_is_acknowledged_and_kept_raw() {
    // A message without an id is refused for its own content: kept raw, counted, and the POST
    // acknowledged (a 500 would only bring the same bytes back).
    let ch = cluster().add_channel("ack-content");
    let mut payload = texts(&ch, &[("wamid.content.1", "fine")]);
    payload["entry"][0]["changes"][0]["value"]["messages"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "from": "16505557001", "type": "text", "text": { "body": "no id" } }));
    assert_eq!(ch.post_signed(&payload).status, 200);
    let mut db = cluster().connect();
    assert_eq!(stored(&mut db, "wamid.content.1"), 1);
    assert_eq!(incomplete_events(&mut db, &ch.name), 0);
    let outcome: String = db
        .query_one(
            "SELECT e.outcome FROM wa_webhook_events e JOIN wa_channels c ON c.id = e.channel_id WHERE c.name = $1",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    assert_eq!(outcome, "partial");
}

#[test]
fn a_lone_surrogate_in_one_message_costs_none_of_the_three() {
    let ch = cluster().add_channel("surrogate");
    // Built as text: serde_json cannot hold a lone surrogate, which is the point.
    let body = serde_json::to_string(&texts(
        &ch,
        &[("wamid.sur.1", "first"), ("wamid.sur.2", "MIDDLE"), ("wamid.sur.3", "third")],
    ))
    .unwrap()
    .replace("MIDDLE", r"broken \uD800 half");
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_err());
    let signature = e2e::whatsapp_cloud::signature::sign(ch.app_secret.as_bytes(), body.as_bytes());
    let answer = http_post(&cluster().webhook_url(&ch.name), body.as_bytes(), Some(&signature));
    assert_eq!(answer.status, 200, "{answer:?}");
    let mut db = cluster().connect();
    let bodies: Vec<String> = db
        .query(
            "SELECT m.body FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = $1 ORDER BY m.wamid",
            &[&ch.name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(bodies, ["first", "broken \u{FFFD} half", "third"]);
    // The raw event keeps the exact bytes Meta signed.
    let raw: Vec<u8> = db
        .query_one(
            "SELECT e.body FROM wa_webhook_events e JOIN wa_channels c ON c.id = e.channel_id WHERE c.name = $1",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    assert_eq!(raw, body.as_bytes());
}

#[test]
fn incomplete_events_outlive_retention_and_the_maintenance_worker_replays_them() {
    let cluster = Cluster::private_with("whatsapp_channel.webhook_event_retention = 1");
    let ch = cluster.add_channel("ack-kept");
    let mut db = cluster.connect();
    refuse_in_trigger(&mut db, &ch, "kept");
    let incomplete = texts(&ch, &[("wamid.kept.refused", "refused")]);
    assert_eq!(ch.post_signed_to(&cluster, &incomplete).unwrap().status, 500);
    assert_eq!(ch.post_signed_to(&cluster, &texts(&ch, &[("wamid.kept.fine", "fine")])).unwrap().status, 200);
    std::thread::sleep(Duration::from_millis(1100)); // both events past their 1 s retention
    // A reload makes the maintenance worker look at once (otherwise: every minute).
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
    let purged = poll(|| {
        (count(&mut db, "SELECT count(*) FROM wa_webhook_events e JOIN wa_channels c ON c.id = e.channel_id WHERE c.name = $1 AND e.outcome = 'stored'", &ch.name) == 0).then_some(())
    });
    assert!(purged.is_some(), "the stored event was not purged:\n{}", cluster.log());
    assert_eq!(incomplete_events(&mut db, &ch.name), 1, "the incomplete event is kept past its retention");

    // Fixed, and Meta has given up: the maintenance worker's replay stores the message.
    db.batch_execute("DROP TRIGGER refuse_kept ON wa_messages").unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
    let replayed = poll(|| (stored(&mut db, "wamid.kept.refused") == 1).then_some(()));
    assert!(replayed.is_some(), "the maintenance worker did not replay the event:\n{}", cluster.log());
    let done = poll(|| (incomplete_events(&mut db, &ch.name) == 0).then_some(()));
    assert!(done.is_some());
}

#[test]
fn a_template_status_a_trigger_refuses_gets_500_and_is_applied_on_redelivery() {
    let ch = cluster().add_channel("ack-template");
    let mut db = cluster().connect();
    db.execute("UPDATE wa_channels SET waba_id = '5550099' WHERE name = $1", &[&ch.name]).unwrap();
    db.batch_execute(&format!(
        "CREATE FUNCTION refuse_template() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.channel_id = (SELECT id FROM public.wa_channels WHERE name = '{name}') THEN
                 RAISE EXCEPTION 'a user trigger refuses this template';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_template BEFORE INSERT OR UPDATE ON wa_templates FOR EACH ROW EXECUTE FUNCTION refuse_template();",
        name = ch.name
    ))
    .unwrap();
    let update = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "5550099", "time": 1, "changes": [{
        "field": "message_template_status_update",
        "value": { "event": "APPROVED", "message_template_id": 77, "message_template_name": "welcome",
                   "message_template_language": "en_US", "reason": "NONE" } }] }] });
    assert_eq!(ch.post_signed(&update).status, 500, "a template status the database refused is not acknowledged");
    assert_eq!(incomplete_events(&mut db, &ch.name), 1);
    db.batch_execute("DROP TRIGGER refuse_template ON wa_templates; DROP FUNCTION refuse_template()").unwrap();
    assert_eq!(ch.post_signed(&update).status, 200);
    let status: String = db
        .query_one(
            "SELECT t.status FROM wa_templates t JOIN wa_channels c ON c.id = t.channel_id WHERE c.name = $1 AND t.name = 'welcome'",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    assert_eq!(status, "APPROVED");
}
