//! The outbox (issue 5): every send kind arrives at the Graph API with Meta's exact JSON, the
//! enqueue-time checks, a token error pausing the channel's queue until the token is replaced,
//! the per-channel rate limit, and per-recipient order across a retry.

use e2e::wa_sim::graph::Fault;
use e2e::{DEADLINE, cluster, error_of, poll};
use serde_json::{Value, json};
use std::time::Duration;

fn sent_to(phone_number_id: &str, count: usize) -> Vec<Value> {
    let got = cluster().graph.wait_for(count, DEADLINE, |r| r.path.contains(phone_number_id) && r.wamid.is_some());
    assert_eq!(got.len(), count, "the Graph API received {} of {count} sends", got.len());
    got.iter().map(|r| r.json()).collect()
}

#[test]
fn every_kind_arrives_with_metas_json() {
    let ch = cluster().add_channel("kinds-out");
    let inbound = ch.customer_writes("15551110001");
    let mut db = cluster().connect();
    let n = &ch.name;
    db.execute(
        "SELECT wa_send_text($1, '15551110001', 'see https://example.com', reply_to => $2, preview_url => true)",
        &[n, &inbound],
    )
    .unwrap();
    db.execute("SELECT wa_send_media($1, '15551110001', 'image', 'https://example.com/a.jpg', caption => 'A')", &[n])
        .unwrap();
    db.execute("SELECT wa_send_media($1, '15551110001', 'document', '1003383421387256', caption => 'Invoice', filename => 'inv.pdf')", &[n]).unwrap();
    db.execute(
        "SELECT wa_send_template($1, '15551110001', 'order_update', 'en_US', '[{\"type\":\"body\",\"parameters\":[{\"type\":\"text\",\"text\":\"Ann\"}]}]')",
        &[n],
    )
    .unwrap();
    db.execute(
        "SELECT wa_send_interactive($1, '15551110001', '{\"type\":\"button\",\"body\":{\"text\":\"Pick\"},\"action\":{\"buttons\":[{\"type\":\"reply\",\"reply\":{\"id\":\"y\",\"title\":\"Yes\"}}]}}')",
        &[n],
    )
    .unwrap();
    db.execute(
        "SELECT wa_send_location($1, '15551110001', 37.4851, -122.1483, name => 'HQ', address => '1 Hacker Way')",
        &[n],
    )
    .unwrap();
    db.execute("SELECT wa_send_reaction($1, $2, '👍')", &[n, &inbound]).unwrap();
    db.execute("SELECT wa_mark_read($1, $2, typing => true)", &[n, &inbound]).unwrap();
    // Messages to one customer go out one at a time, in order: wait for all eight.
    let got = cluster().graph.wait_for(8, DEADLINE, |r| r.path.contains(&ch.phone_number_id));
    // Every message carries its outbox id for its statuses (a read receipt is no message);
    // the rest is Meta's shape.
    let ids: Vec<i64> = db
        .query("SELECT m.id FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = $1 AND direction = 'outbound' ORDER BY m.id", &[n])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let bodies: Vec<Value> = got
        .iter()
        .zip(&ids)
        .map(|(r, id)| {
            let mut body = r.json();
            let callback = body.as_object_mut().unwrap().remove("biz_opaque_callback_data");
            let expected = (body["status"] != "read").then(|| json!(format!("whatsapp_channel:{id}")));
            assert_eq!(callback, expected, "{}", r.body);
            body
        })
        .collect();
    let env = |kind: &str, object: Value| {
        let mut v = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+15551110001", "type": kind});
        v[kind] = object;
        v
    };
    let mut text = env("text", json!({"preview_url": true, "body": "see https://example.com"}));
    text["context"] = json!({"message_id": inbound});
    assert_eq!(bodies[0], text);
    assert_eq!(bodies[1], env("image", json!({"link": "https://example.com/a.jpg", "caption": "A"})));
    assert_eq!(
        bodies[2],
        env("document", json!({"id": "1003383421387256", "caption": "Invoice", "filename": "inv.pdf"}))
    );
    assert_eq!(
        bodies[3],
        env(
            "template",
            json!({"name": "order_update", "language": {"code": "en_US"},
                               "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ann"}]}]})
        )
    );
    assert_eq!(bodies[4]["interactive"]["action"]["buttons"][0]["reply"]["id"], "y");
    assert_eq!(
        bodies[5],
        env("location", json!({"latitude": 37.4851, "longitude": -122.1483, "name": "HQ", "address": "1 Hacker Way"}))
    );
    assert_eq!(bodies[6], env("reaction", json!({"message_id": inbound, "emoji": "👍"})));
    assert_eq!(
        bodies[7],
        json!({"messaging_product": "whatsapp", "status": "read", "message_id": inbound, "typing_indicator": {"type": "text"}})
    );
    // All eight end as sent; the read receipt has no wamid of its own.
    let rows = poll(|| {
        let rows = db
            .query("SELECT type, status, wamid IS NOT NULL FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = $1 AND direction = 'outbound' ORDER BY m.id", &[n])
            .unwrap();
        rows.iter().all(|r| r.get::<_, String>(1) == "sent").then_some(rows)
    })
    .expect("every message sent");
    let has_wamid: Vec<bool> = rows.iter().map(|r| r.get(2)).collect();
    assert_eq!(has_wamid, [true, true, true, true, true, true, true, false]);
    // The derived columns are filled for outbound messages too.
    let derived = db
        .query(
            "SELECT type, reply_to_wamid, media_id, media_filename, latitude, location_name, reaction_to_wamid, reaction_emoji
               FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id
              WHERE c.name = $1 AND direction = 'outbound' ORDER BY m.id",
            &[n],
        )
        .unwrap();
    let of = |kind: &str| derived.iter().find(|r| r.get::<_, String>(0) == kind).expect(kind);
    assert_eq!(of("text").get::<_, Option<String>>(1).as_deref(), Some(inbound.as_str()));
    let document = of("document");
    assert_eq!(
        (document.get::<_, Option<String>>(2).as_deref(), document.get::<_, Option<String>>(3).as_deref()),
        (Some("1003383421387256"), Some("inv.pdf"))
    );
    let location = of("location");
    assert_eq!(
        (location.get::<_, Option<f64>>(4), location.get::<_, Option<String>>(5).as_deref()),
        (Some(37.4851), Some("HQ"))
    );
    let reaction = of("reaction");
    assert_eq!(
        (reaction.get::<_, Option<String>>(6).as_deref(), reaction.get::<_, Option<String>>(7).as_deref()),
        (Some(inbound.as_str()), Some("👍"))
    );
}

#[test]
fn enqueue_refuses_what_meta_would_refuse_with_the_rule_and_the_fix() {
    let ch = cluster().add_channel("checks");
    let n = &ch.name;
    // Nobody has written: the 24-hour window is closed for free-form messages, open for templates.
    let (msg, hint) = error_of("SELECT wa_send_text($1, '15551110002', 'hi')", &[n]);
    assert!(msg.contains("24-hour customer-service window with +15551110002 is closed"), "{msg}");
    assert!(hint.contains("use wa_send_template()"), "{hint}");
    cluster().connect().execute("SELECT wa_send_template($1, '15551110002', 'hello_world', 'en_US')", &[n]).unwrap();
    ch.customer_writes("15551110002");
    cluster().connect().execute("SELECT wa_send_text($1, '15551110002', 'now it is open')", &[n]).unwrap();
    let (msg, _) =
        error_of("SELECT wa_send_media($1, '15551110002', 'image', '123', caption => repeat('c', 1025))", &[n]);
    assert!(msg.contains("at most 1024"), "{msg}");
    let (msg, hint) = error_of("SELECT wa_send_media($1, '15551110002', 'image', 'not-a-link')", &[n]);
    assert!(
        msg.contains("neither a media id nor an http(s) link") && hint.contains("wa_upload_media"),
        "{msg} / {hint}"
    );
    let (msg, _) = error_of("SELECT wa_send_reaction($1, 'wamid.nope', '👍')", &[n]);
    assert!(msg.contains("no message wamid.nope"), "{msg}");
    // The per-channel switch, and a disabled channel.
    let mut db = cluster().connect();
    db.execute("UPDATE wa_channels SET allow_outside_window = true WHERE name = $1", &[n]).unwrap();
    db.execute("SELECT wa_send_text($1, '15551110003', 'allowed anyway')", &[n]).unwrap();
    db.execute("UPDATE wa_channels SET enabled = false WHERE name = $1", &[n]).unwrap();
    let (msg, hint) = error_of("SELECT wa_send_text($1, '15551110003', 'x')", &[n]);
    assert!(msg.contains("is disabled") && hint.contains("enabled = true"), "{msg} / {hint}");
    // A business-scoped user id goes out as "recipient".
    db.execute("UPDATE wa_channels SET enabled = true WHERE name = $1", &[n]).unwrap();
    db.execute("SELECT wa_send_text($1, 'US.13491208655302741918', 'to a username user')", &[n]).unwrap();
    let got = cluster().graph.wait_for(1, DEADLINE, |r| r.body.contains("US.13491208655302741918"));
    assert_eq!(got[0].json()["recipient"], "US.13491208655302741918");
}

#[test]
fn an_expired_token_pauses_the_queue_until_it_is_replaced() {
    let ch = cluster().add_channel("token");
    ch.customer_writes("15551110004");
    cluster().graph.fail_next("+15551110004", Fault::meta(190));
    let mut db = cluster().connect();
    let first: i64 = db.query_one("SELECT wa_send_text($1, '15551110004', 'one')", &[&ch.name]).unwrap().get(0);
    let paused = poll(|| {
        db.query_one("SELECT outbox_paused_reason FROM wa_channel_health WHERE channel = $1", &[&ch.name])
            .unwrap()
            .get::<_, Option<String>>(0)
    })
    .expect("the channel is paused");
    assert!(paused.contains("access token"), "{paused}");
    // Queued while paused: nothing is sent, nothing is failed.
    db.execute("SELECT wa_send_text($1, '15551110004', 'two')", &[&ch.name]).unwrap();
    let statuses: Vec<(String, i32)> = db
        .query("SELECT status, attempts FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = $1 AND direction = 'outbound' ORDER BY m.id", &[&ch.name])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(statuses, [("queued".to_string(), 0), ("queued".to_string(), 0)]);
    let (msg, _) = error_of("SELECT wa_set_access_token($1, 'short')", &[&ch.name]);
    assert!(msg.contains("invalid access_token"), "{msg}");
    db.execute("SELECT wa_set_access_token($1, $2)", &[&ch.name, &ch.access_token]).unwrap();
    let bodies = sent_to(&ch.phone_number_id, 2);
    assert_eq!((bodies[0]["text"]["body"].as_str(), bodies[1]["text"]["body"].as_str()), (Some("one"), Some("two")));
    let status: String = db.query_one("SELECT status FROM wa_messages WHERE id = $1", &[&first]).unwrap().get(0);
    assert_ne!(status, "failed");
}

#[test]
fn the_channel_rate_limit_queues_instead_of_failing() {
    let ch = cluster().add_channel("rate");
    let mut db = cluster().connect();
    db.execute(
        "UPDATE wa_channels SET max_messages_per_second = 4, allow_outside_window = true WHERE name = $1",
        &[&ch.name],
    )
    .unwrap();
    for i in 0..16 {
        db.execute("SELECT wa_send_text($1, $2, 'burst')", &[&ch.name, &format!("1555222{i:04}")]).unwrap();
    }
    let got = cluster().graph.wait_for(16, Duration::from_secs(30), |r| r.path.contains(&ch.phone_number_id));
    assert_eq!(got.len(), 16, "all are sent in the end");
    let failed: i64 = db
        .query_one("SELECT count(*) FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = $1 AND status = 'failed'", &[&ch.name])
        .unwrap()
        .get(0);
    assert_eq!(failed, 0);
    // 4 at once (one second's burst), then 4 per second: the last 12 take at least 3 s.
    let arrivals: Vec<std::time::Instant> = got.iter().map(|r| r.at).collect();
    let span = *arrivals.iter().max().unwrap() - *arrivals.iter().min().unwrap();
    assert!(span >= Duration::from_millis(2500), "16 messages at 4/s arrived within {span:?}");
}

#[test]
fn messages_to_one_customer_keep_their_order_across_a_retry() {
    let ch = cluster().add_channel("order");
    ch.customer_writes("15551110005");
    cluster().graph.fail_next("+15551110005", Fault::meta(131000));
    let mut db = cluster().connect();
    for i in 1..=4 {
        db.execute("SELECT wa_send_text($1, '15551110005', $2)", &[&ch.name, &format!("part {i}")]).unwrap();
    }
    let accepted = sent_to(&ch.phone_number_id, 4);
    let order: Vec<&str> = accepted.iter().map(|b| b["text"]["body"].as_str().unwrap()).collect();
    assert_eq!(order, ["part 1", "part 2", "part 3", "part 4"]);
}

#[test]
fn past_a_burst_of_45_a_customer_waits_for_the_borrowed_time() {
    // Meta's pair rate limit (131056): one message every 6 s to a user, bursts of up to 45 in
    // 6 s that borrow the quota of the messages sent early. The 46th message waits in the
    // queue, unsent and in order, until the burst is paid back (45 x 6 s), instead of failing.
    let ch = cluster().add_channel("pair");
    ch.customer_writes("15551110006");
    let mut db = cluster().connect();
    let mut tx = db.transaction().unwrap();
    for i in 1..=46 {
        tx.execute("SELECT wa_send_text($1, '15551110006', $2)", &[&ch.name, &format!("part {i}")]).unwrap();
    }
    tx.commit().unwrap();
    // The first that waits: the 46th, unless this machine took over 6 s for the first 45 (the
    // burst then ends earlier, and owes less).
    let (waiting, attempts, due_in) = poll(|| {
        let row = db
            .query_opt(
                "SELECT m.body, m.attempts, extract(epoch FROM m.next_attempt_at - now())::float8
                   FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id
                  WHERE c.name = $1 AND m.status = 'queued' AND m.next_attempt_at > now() + interval '30 seconds'
                  ORDER BY m.id LIMIT 1",
                &[&ch.name],
            )
            .unwrap()?;
        Some((row.get::<_, String>(0), row.get::<_, i32>(1), row.get::<_, f64>(2)))
    })
    .expect("a message waits in the queue for the pair's quota");
    let sent = cluster().graph.wait_for(0, Duration::ZERO, |r| r.path.contains(&ch.phone_number_id));
    let k = sent.len();
    assert!((1..=45).contains(&k), "{k} messages went out in the burst");
    assert_eq!(waiting, format!("part {}", k + 1), "the next one in order waits");
    assert_eq!(attempts, 0, "waiting for the pair's quota is not a failed attempt");
    // k messages borrowed k x 6 s from the start of the burst, at most 6 s ago.
    let owed = 6.0 * k as f64;
    assert!(due_in <= owed && due_in >= owed - 6.0 - 5.0, "due in {due_in:.1} s after a burst of {k}");
    let order: Vec<String> = sent.iter().map(|r| r.json()["text"]["body"].as_str().unwrap().to_string()).collect();
    assert_eq!(order, (1..=k).map(|i| format!("part {i}")).collect::<Vec<_>>());
    let (failed, behind): (i64, i64) = {
        let row = db
            .query_one(
                "SELECT count(*) FILTER (WHERE m.status = 'failed'),
                        count(*) FILTER (WHERE m.status = 'queued' AND m.next_attempt_at > now() + interval '30 seconds')
                   FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = $1",
                &[&ch.name],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(failed, 0);
    assert_eq!(behind as usize, 46 - k, "the rest of the customer's queue waits behind it");
}

#[test]
fn several_channels_at_once_every_send_recorded_once_in_order_per_customer() {
    use postgres::fallible_iterator::FallibleIterator;
    let channels: Vec<e2e::Channel> = (0..3).map(|_| cluster().add_channel("many-out")).collect();
    let names: Vec<String> = channels.iter().map(|c| c.name.clone()).collect();
    let mut db = cluster().connect();
    db.execute("UPDATE wa_channels SET allow_outside_window = true WHERE name = ANY($1)", &[&names]).unwrap();
    let mut listen = cluster().connect();
    listen.batch_execute("LISTEN wa_status").unwrap();
    // 3 channels x 20 customers x 3 messages, queued in one transaction.
    let ids: Vec<i64> = db
        .query(
            "SELECT wa_send_text(c.name, '1555777' || lpad(r::text, 4, '0'), c.name || ' r' || r || ' m' || m)
               FROM unnest($1::text[]) c(name), generate_series(1, 20) r, generate_series(1, 3) m
              ORDER BY c.name, r, m",
            &[&names],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(ids.len(), 180);
    let ours = |path: &str| channels.iter().any(|c| path.contains(&c.phone_number_id));
    let got = cluster().graph.wait_for(180, DEADLINE, |r| ours(&r.path) && r.wamid.is_some());
    assert_eq!(got.len(), 180, "the Graph API received {} of 180 sends", got.len());
    // Each customer's three arrive in the order they were queued.
    for c in &names {
        for r in 1..=20 {
            let prefix = format!("{c} r{r} m");
            let order: Vec<String> = got
                .iter()
                .filter_map(|g| g.json()["text"]["body"].as_str().map(str::to_string))
                .filter(|b| b.starts_with(&prefix) && b.len() == prefix.len() + 1)
                .collect();
            assert_eq!(order, vec![format!("{prefix}1"), format!("{prefix}2"), format!("{prefix}3")]);
        }
    }
    // Every row recorded sent, with the wamid Meta gave it, once.
    let recorded = poll(|| {
        let n: i64 = db
            .query_one("SELECT count(*) FROM wa_messages WHERE id = ANY($1) AND status = 'sent'", &[&ids])
            .unwrap()
            .get(0);
        (n == 180).then_some(())
    });
    assert!(recorded.is_some(), "not every send was recorded as sent");
    let mut given: Vec<String> = got.iter().filter_map(|g| g.wamid.clone()).collect();
    given.sort();
    let mut stored: Vec<String> = db
        .query("SELECT wamid FROM wa_messages WHERE id = ANY($1) ORDER BY wamid", &[&ids])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    stored.sort();
    assert_eq!(stored, given);
    // One notification each (its 'sent': these channels get no status webhooks); a marker sent
    // now arrives after all of them.
    db.batch_execute("NOTIFY wa_status, 'end'").unwrap();
    let mut sent = std::collections::HashMap::<i64, usize>::new();
    let mut notifications = listen.notifications();
    let mut arrived = notifications.timeout_iter(DEADLINE);
    while let Ok(Some(n)) = arrived.next() {
        if n.payload() == "end" {
            break;
        }
        let v: Value = serde_json::from_str(n.payload()).unwrap();
        *sent.entry(v["id"].as_i64().unwrap()).or_default() += 1;
    }
    assert!(ids.iter().all(|id| sent.get(id) == Some(&1)), "not exactly one notification per message");
}
