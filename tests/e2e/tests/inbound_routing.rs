//! How inbound items become rows: routing across the numbers of one app, per-item isolation,
//! concurrent redeliveries, and replay.

use e2e::wa_sim::payloads;
use e2e::{cluster, messages_of, value_with};
use serde_json::json;

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
    // (The listener writes its counts at most once a second.)
    let health = e2e::poll(|| {
        let r = cluster()
            .connect()
            .query_one("SELECT last_unrouted_phone_number_id, counts ->> 'unrouted', counts ->> 'partial' FROM wa_channel_health WHERE channel = $1", &[&a.name])
            .unwrap();
        r.get::<_, Option<String>>(0).is_some().then_some(r)
    })
    .expect("the unrouted number is counted");
    assert_eq!(health.get::<_, String>(0), "999000111");
    assert_eq!((health.get::<_, String>(1), health.get::<_, String>(2)), ("1".into(), "1".into()));
}

#[test]
fn one_bad_item_rolls_back_alone() {
    let ch = cluster().add_channel("isolate");
    // A user's trigger refuses one message's value (a data exception, class 22, as Postgres
    // raises for a value it cannot take): that one item fails inside Postgres; the messages
    // around it must still be stored. (Only this test's wamid: the cluster is shared.)
    cluster()
        .connect()
        .batch_execute(
            "CREATE FUNCTION refuse_one_message() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.wamid = 'wamid.iso.2' THEN
                     RAISE EXCEPTION 'this value is refused (test)' USING ERRCODE = 'data_exception';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_one_message BEFORE INSERT ON wa_messages
                 FOR EACH ROW EXECUTE FUNCTION refuse_one_message();",
        )
        .unwrap();
    let messages = json!([
        { "from": "16505558005", "id": "wamid.iso.1", "timestamp": "1", "type": "text", "text": { "body": "before" } },
        { "from": "16505558005", "id": "wamid.iso.2", "timestamp": "2", "type": "text", "text": { "body": "refused" } },
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
    assert!(error.contains("message wamid.iso.2") && error.contains("this value is refused"), "{error}");
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
