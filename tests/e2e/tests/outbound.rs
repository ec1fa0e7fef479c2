//! Outbound: wa_send_text() queues in the caller's transaction; the delivery worker sends
//! after COMMIT to the Graph API simulator and records what Meta answered.

use e2e::wa_sim::graph::Fault;
use e2e::wa_sim::payloads;
use e2e::{DEADLINE, Listener, cluster, poll};
use serde_json::json;

fn status_of(id: i64) -> (String, Option<String>, Option<i32>, Option<String>, i32) {
    let row = cluster()
        .connect()
        .query_one("SELECT status, wamid, error_code, error_hint, attempts FROM wa_messages WHERE id = $1", &[&id])
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
}

fn wait_status(id: i64, wanted: &str) -> (String, Option<String>, Option<i32>, Option<String>, i32) {
    poll(|| Some(status_of(id)).filter(|s| s.0 == wanted))
        .unwrap_or_else(|| panic!("message {id} never reached {wanted}: {:?}", status_of(id)))
}

#[test]
fn committed_text_arrives_at_the_graph_api_with_the_exact_json() {
    let ch = cluster().add_channel("send");
    ch.customer_writes("15551234567");
    let mut db = cluster().connect();
    let id: i64 =
        db.query_one("SELECT wa_send_text($1, '+1 555-123-4567', 'Your reply here')", &[&ch.name]).unwrap().get(0);
    let got = cluster().graph.wait_for(1, DEADLINE, |r| r.path.contains(&ch.phone_number_id));
    assert_eq!(got.len(), 1);
    let request = &got[0];
    assert_eq!(request.path, format!("/v25.0/{}/messages", ch.phone_number_id));
    assert_eq!(request.authorization.as_deref(), Some(format!("Bearer {}", ch.access_token).as_str()));
    assert_eq!(
        request.json(),
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+15551234567",
               "type": "text", "text": {"preview_url": false, "body": "Your reply here"},
               "biz_opaque_callback_data": format!("whatsapp_channel:{id}")})
    );
    let (_, wamid, code, _, attempts) = wait_status(id, "sent");
    assert_eq!(wamid, request.wamid);
    assert_eq!((code, attempts), (None, 1));
}

#[test]
fn rolled_back_text_is_never_sent() {
    let ch = cluster().add_channel("rollback");
    ch.customer_writes("15550000001");
    ch.customer_writes("15550000002");
    let mut db = cluster().connect();
    let mut tx = db.transaction().unwrap();
    tx.execute("SELECT wa_send_text($1, '15550000001', 'never')", &[&ch.name]).unwrap();
    tx.rollback().unwrap();
    // A later committed message proves the worker ran after the rollback.
    db.execute("SELECT wa_send_text($1, '15550000002', 'later')", &[&ch.name]).unwrap();
    let got = cluster().graph.wait_for(1, DEADLINE, |r| r.path.contains(&ch.phone_number_id));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["to"], "+15550000002");
    assert!(cluster().graph.received().iter().all(|r| !r.body.contains("never")));
}

#[test]
fn development_mode_error_fails_the_message_with_the_seeds_explanation() {
    let ch = cluster().add_channel("devmode");
    ch.customer_writes("15550000003");
    cluster().graph.fail_next("+15550000003", Fault::meta(131030));
    let id: i64 =
        cluster().connect().query_one("SELECT wa_send_text($1, '15550000003', 'hello')", &[&ch.name]).unwrap().get(0);
    let (_, wamid, code, hint, attempts) = wait_status(id, "failed");
    assert_eq!((wamid, code, attempts), (None, Some(131030), 1));
    assert!(hint.unwrap().contains("recipient not in allowed list: the app is in development mode"));
}

#[test]
fn transient_errors_are_retried_until_sent() {
    let ch = cluster().add_channel("retry");
    ch.customer_writes("15550000004");
    cluster().graph.fail_next("+15550000004", Fault::meta(130429));
    cluster().graph.fail_next("+15550000004", Fault::Drop);
    let id: i64 = cluster()
        .connect()
        .query_one("SELECT wa_send_text($1, '15550000004', 'eventually')", &[&ch.name])
        .unwrap()
        .get(0);
    let (_, wamid, code, _, attempts) = wait_status(id, "sent");
    assert!(wamid.is_some());
    assert_eq!((code, attempts), (None, 3));
    assert_eq!(cluster().graph.received().iter().filter(|r| r.path.contains(&ch.phone_number_id)).count(), 3);
}

#[test]
fn retry_classes_follow_the_gateways_named_sets() {
    let ch = cluster().add_channel("classes");
    for n in ["15550000011", "15550000012", "15550000013"] {
        ch.customer_writes(n);
    }
    let graph = &cluster().graph;
    // 131048 (spam rate limit) is a throttle: backed off, then sent.
    graph.fail_next("+15550000011", Fault::meta(131048));
    // 131053 (media upload error): a few attempts, then failed with how many.
    for _ in 0..3 {
        graph.fail_next("+15550000012", Fault::meta(131053));
    }
    // 131049 (per-customer marketing limit): final at once, with the 24-hour advice.
    graph.fail_next("+15550000013", Fault::meta(131049));
    let mut db = cluster().connect();
    let send = |db: &mut postgres::Client, to: &str| -> i64 {
        db.query_one("SELECT wa_send_text($1, $2, 'x')", &[&ch.name, &to]).unwrap().get(0)
    };
    let (throttled, upload, marketing) =
        (send(&mut db, "15550000011"), send(&mut db, "15550000012"), send(&mut db, "15550000013"));
    let (_, wamid, _, _, attempts) = wait_status(throttled, "sent");
    assert!(wamid.is_some() && attempts == 2, "131048 retried once: {attempts} attempts");
    let (_, _, code, hint, attempts) = wait_status(upload, "failed");
    assert_eq!((code, attempts), (Some(131053), 3));
    assert!(hint.unwrap_or_default().contains("media upload error"));
    let title: String = db.query_one("SELECT error_title FROM wa_messages WHERE id = $1", &[&upload]).unwrap().get(0);
    assert!(title.starts_with("gave up after 3 attempts"), "{title}");
    let (_, _, code, hint, attempts) = wait_status(marketing, "failed");
    assert_eq!((code, attempts), (Some(131049), 1));
    assert!(hint.unwrap_or_default().contains("24 hours"));
}

#[test]
fn statuses_move_the_message_forward_never_back_and_are_notified() {
    let ch = cluster().add_channel("status");
    ch.customer_writes("15550000005");
    let id: i64 = cluster()
        .connect()
        .query_one("SELECT wa_send_text($1, '15550000005', 'track me')", &[&ch.name])
        .unwrap()
        .get(0);
    let (_, wamid, ..) = wait_status(id, "sent");
    let wamid = wamid.unwrap();
    let mut listener = Listener::new(&["wa_status"]);
    for status in ["read", "delivered", "read"] {
        assert_eq!(
            ch.post_signed(&payloads::status(&ch.phone_number_id, &wamid, status, "15550000005", 1750263773)).status,
            200
        );
    }
    // Notified once, when it moved to read (the delivered after it moved nothing); the row says
    // where it is.
    let notes: Vec<_> = listener.drain("wa_status").into_iter().filter(|p| p["id"] == id).collect();
    assert_eq!(notes, [json!({"id": id, "channel_id": ch.id})]);
    let db = &mut cluster().connect();
    let (status, read_at_set, history): (String, bool, i64) = {
        let r = db
            .query_one(
                "SELECT m.status, m.read_at IS NOT NULL, (SELECT count(*) FROM wa_message_statuses s WHERE s.wamid = m.wamid)
                   FROM wa_messages m WHERE m.id = $1",
                &[&id],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!((status.as_str(), read_at_set, history), ("read", true, 2));
}

#[test]
fn a_status_that_arrives_before_its_send_is_recorded_is_applied_later() {
    let ch = cluster().add_channel("early");
    ch.customer_writes("15550000006");
    let wamid = format!("wamid.early.{}", ch.name);
    // Meta's "delivered" webhook can beat the worker's own record of the send.
    assert_eq!(
        ch.post_signed(&payloads::status(&ch.phone_number_id, &wamid, "delivered", "15550000006", 1750263773)).status,
        200
    );
    cluster().graph.fail_next("+15550000006", Fault::AcceptAs(wamid.clone()));
    let id: i64 =
        cluster().connect().query_one("SELECT wa_send_text($1, '15550000006', 'fast')", &[&ch.name]).unwrap().get(0);
    let (_, got_wamid, ..) = wait_status(id, "delivered");
    assert_eq!(got_wamid.as_deref(), Some(wamid.as_str()));
}

#[test]
fn the_simulators_status_webhooks_take_a_message_to_read() {
    let ch = cluster().add_channel("simstatus");
    ch.customer_writes("15550000007");
    cluster().enable_status_webhooks(&ch);
    let mut listener = Listener::new(&["wa_status"]);
    let id: i64 = cluster()
        .connect()
        .query_one("SELECT wa_send_text($1, '15550000007', 'tick tick')", &[&ch.name])
        .unwrap()
        .get(0);
    wait_status(id, "read");
    let times: (bool, bool) = cluster()
        .connect()
        .query_one("SELECT delivered_at IS NOT NULL, read_at IS NOT NULL FROM wa_messages WHERE id = $1", &[&id])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(times, (true, true), "read without its delivered and read times");
    // One notification per move: sent, delivered, read.
    let notes: Vec<_> = listener.drain("wa_status").into_iter().filter(|p| p["id"] == id).collect();
    assert_eq!(notes, vec![json!({"id": id, "channel_id": ch.id}); 3]);
}

#[test]
fn a_failed_status_is_terminal_and_carries_metas_error_and_a_hint() {
    let ch = cluster().add_channel("failedstatus");
    ch.customer_writes("15550000008");
    let id: i64 =
        cluster().connect().query_one("SELECT wa_send_text($1, '15550000008', 'x')", &[&ch.name]).unwrap().get(0);
    let (_, wamid, ..) = wait_status(id, "sent");
    let wamid = wamid.unwrap();
    // A voice note can also be "played"; a failure after that is still final.
    for status in ["delivered", "failed", "read"] {
        assert_eq!(
            ch.post_signed(&payloads::status(&ch.phone_number_id, &wamid, status, "15550000008", 1750263773)).status,
            200
        );
    }
    let row = cluster()
        .connect()
        .query_one(
            "SELECT status, error_code, error_details, failed_at IS NOT NULL FROM wa_messages WHERE id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!((row.get::<_, String>(0).as_str(), row.get::<_, Option<i32>>(1)), ("failed", Some(131049)));
    assert!(row.get::<_, String>(2).contains("healthy ecosystem engagement"));
    assert!(row.get::<_, bool>(3));
}

#[test]
fn played_follows_read_for_voice_notes() {
    let ch = cluster().add_channel("played");
    ch.customer_writes("15550000009");
    let id: i64 = cluster()
        .connect()
        .query_one("SELECT wa_send_media($1, '15550000009', 'audio', 'https://example.com/v.ogg')", &[&ch.name])
        .unwrap()
        .get(0);
    let (_, wamid, ..) = wait_status(id, "sent");
    let wamid = wamid.unwrap();
    for status in ["read", "played", "delivered"] {
        assert_eq!(
            ch.post_signed(&payloads::status(&ch.phone_number_id, &wamid, status, "15550000009", 1750263773)).status,
            200
        );
    }
    assert_eq!(status_of(id).0, "played");
}

#[test]
fn pricing_is_kept_per_status_and_counted_once_per_message_by_day_and_category() {
    let ch = cluster().add_channel("costs");
    ch.customer_writes("15550000021");
    let mut db = cluster().connect();
    let mut send = |text: &str| -> String {
        let id: i64 = db.query_one("SELECT wa_send_text($1, '15550000021', $2)", &[&ch.name, &text]).unwrap().get(0);
        wait_status(id, "sent").1.unwrap()
    };
    let (paid, free) = (send("paid"), send("free"));
    // Meta puts pricing on sent and on one of delivered/read; a day apart here.
    let post = |wamid: &str, status: &str, at: i64, pricing: Option<serde_json::Value>| {
        let mut p = payloads::status(&ch.phone_number_id, wamid, status, "15550000021", at);
        let item = &mut p["entry"][0]["changes"][0]["value"]["statuses"][0];
        match pricing {
            Some(pricing) => item["pricing"] = pricing,
            None => drop(item.as_object_mut().unwrap().remove("pricing")),
        }
        assert_eq!(ch.post_signed(&p).status, 200);
    };
    let utility =
        serde_json::json!({ "billable": true, "pricing_model": "PMP", "type": "regular", "category": "utility" });
    post(&paid, "sent", 1_767_225_600, Some(utility.clone())); // 2026-01-01 00:00 UTC
    post(&paid, "delivered", 1_767_312_000, Some(utility)); // 2026-01-02
    post(&paid, "read", 1_767_312_060, None);
    let free_service =
        serde_json::json!({ "pricing_model": "PMP", "type": "free_customer_service", "category": "service" });
    post(&free, "sent", 1_767_225_660, Some(free_service));
    let mut db = cluster().connect();
    // (status, pricing_category, pricing_type, billable)
    type StatusRow = (String, Option<String>, Option<String>, Option<bool>);
    let kept: Vec<StatusRow> = db
        .query(
            "SELECT status, pricing_category, pricing_type, billable FROM wa_message_statuses
              WHERE channel_id = (SELECT id FROM wa_channels WHERE name = $1) AND wamid = $2 ORDER BY status_at",
            &[&ch.name, &paid],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        kept,
        vec![
            ("sent".into(), Some("utility".into()), Some("regular".into()), Some(true)),
            ("delivered".into(), Some("utility".into()), Some("regular".into()), Some(true)),
            ("read".into(), None, None, None),
        ]
    );
    let category: Option<String> =
        db.query_one("SELECT pricing_category FROM wa_messages WHERE wamid = $1", &[&paid]).unwrap().get(0);
    assert_eq!(category.as_deref(), Some("utility"));
    let costs: Vec<(String, String, String, i64, i64)> = db
        .query(
            "SELECT day::text, category, type, messages, billable_messages FROM wa_message_costs
              WHERE channel = $1 ORDER BY category",
            &[&ch.name],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        costs,
        vec![
            ("2026-01-01".into(), "service".into(), "free_customer_service".into(), 1, 0),
            ("2026-01-01".into(), "utility".into(), "regular".into(), 1, 1),
        ]
    );
}

#[test]
fn an_echo_from_the_business_app_is_an_outbound_row_of_the_conversation() {
    let ch = cluster().add_channel("echo");
    let mut listener = Listener::new(&["wa_message"]);
    let echo = payloads::echo(&ch.phone_number_id, "wamid.echo.1", "15550000031", "Sent from the app", 1_767_225_600);
    assert_eq!(ch.post_signed(&echo).status, 200);
    assert_eq!(ch.post_signed(&echo).status, 200, "a redelivery is answered 200 too");
    let mut db = cluster().connect();
    let row = db
        .query_one(
            "SELECT m.id, m.direction, m.source, m.status, m.body, m.sent_at = to_timestamp(1767225600), k.wa_id,
                    (SELECT count(*) FROM wa_messages x WHERE x.wamid = m.wamid)
               FROM wa_messages m JOIN wa_contacts k ON k.id = m.contact_id WHERE m.wamid = 'wamid.echo.1'",
            &[],
        )
        .unwrap();
    let id: i64 = row.get(0);
    let got: (String, Option<String>, String, String, bool, String, i64) =
        (row.get(1), row.get(2), row.get(3), row.get(4), row.get(5), row.get(6), row.get(7));
    assert_eq!(
        got,
        (
            "outbound".into(),
            Some("business_app".into()),
            "sent".into(),
            "Sent from the app".into(),
            true,
            "15550000031".into(),
            1
        )
    );
    // Notified once (not again for the redelivery), like an inbound message: the row above says outbound.
    let contact: i64 = db.query_one("SELECT contact_id FROM wa_messages WHERE id = $1", &[&id]).unwrap().get(0);
    let notes: Vec<_> = listener.drain("wa_message").into_iter().filter(|p| p["channel_id"] == ch.id).collect();
    assert_eq!(notes, [json!({"id": id, "channel_id": ch.id, "contact_id": contact})]);
    // The conversation shows it as the last message; a later status moves it on.
    let last: (i64, String) = db
        .query_one("SELECT last_message_id, last_direction FROM wa_conversations WHERE channel = $1", &[&ch.name])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(last, (id, "outbound".to_string()));
    let delivered = payloads::status(&ch.phone_number_id, "wamid.echo.1", "delivered", "15550000031", 1_767_225_700);
    assert_eq!(ch.post_signed(&delivered).status, 200);
    assert_eq!(wait_status(id, "delivered").0, "delivered");
    // What this extension sends is marked 'api'. (An echo does not open the customer's window.)
    db.execute("UPDATE wa_channels SET allow_outside_window = true WHERE name = $1", &[&ch.name]).unwrap();
    let sent: i64 = db.query_one("SELECT wa_send_text($1, '15550000031', 'from the api')", &[&ch.name]).unwrap().get(0);
    let source: Option<String> = db.query_one("SELECT source FROM wa_messages WHERE id = $1", &[&sent]).unwrap().get(0);
    assert_eq!(source.as_deref(), Some("api"));
}
