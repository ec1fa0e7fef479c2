//! Notifications carry ids only. LISTEN needs no privilege: any role connected to the database
//! hears every channel's notifications. So a payload says no more than "look at row N" (row
//! ids, channel_id, contact_id), and the reader reads that row through its own privileges,
//! which row-level security filters to its channels (README, "Notifications").

use e2e::wa_sim::graph::{Fault, sha256_base64};
use e2e::wa_sim::payloads::{self, Customer, HistoryMessage};
use e2e::{Listener, NOTIFICATION_KEYS, cluster, notification_problem, poll};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Polls `sql` (one boolean, given the channel's id) until it is true.
fn wait_until(db: &mut postgres::Client, channel: i64, what: &str, sql: &str) {
    poll(|| db.query_one(sql, &[&channel]).unwrap().get::<_, bool>(0).then_some(()))
        .unwrap_or_else(|| panic!("never happened: {what}"));
}

#[test]
fn every_notification_carries_only_integer_ids_of_rows_of_its_channel() {
    let ch = cluster().add_channel("ids-only");
    cluster().enable_status_webhooks(&ch);
    let channels = NOTIFICATION_KEYS.map(|(c, _)| c);
    let mut listener = Listener::new(&channels);
    let mut db = cluster().connect();
    let post = |value: Value| assert_eq!(ch.post_signed(&payloads::envelope(&ch.phone_number_id, value)).status, 200);
    let t = now();

    // wa_message: a customer writes; the business answers from the WhatsApp Business app (an
    // echo); a participant writes in a group (wa_group: the group is created first).
    ch.customer_writes("15550007001");
    assert_eq!(
        ch.post_signed(&payloads::echo(&ch.phone_number_id, "wamid.ids.echo", "15550007001", "from the app", t)).status,
        200
    );
    let group = "Y2FwaV9ncm91cDppZHMtb25seS10ZXN0LWdyb3Vw";
    post(payloads::group_lifecycle_value("group_create", group, "Secret project", t - 10, false));
    let writer = Customer { wa_id: "15550007002".into(), name: "Ines".into() };
    post(
        payloads::group_message_value("text", "wamid.ids.group", group, &writer, "the launch is on Friday", t).unwrap(),
    );

    // wa_media: a photo, downloaded by the delivery worker.
    let bytes = b"\xff\xd8\xff\xe0 ids only".to_vec();
    let media_id = cluster().graph.add_media("image/jpeg", bytes.clone());
    post(json!({ "contacts": [{ "profile": { "name": "Pia" }, "wa_id": "15550007001" }],
                 "messages": [{ "from": "15550007001", "id": "wamid.ids.photo", "timestamp": t.to_string(), "type": "image",
                                "image": { "mime_type": "image/jpeg", "sha256": sha256_base64(&bytes), "id": media_id } }] }));

    // wa_channel_event: a webhook-level error Meta reports for the number.
    let (field, error) = payloads::business_change("webhook_error", "", "15550783881").unwrap();
    assert_eq!(ch.post_signed(&payloads::business_body("1", &ch.phone_number_id, field, error, t)).status, 200);

    // wa_status: a send the simulator takes to read; one Meta refuses (failed); one that
    // expires while the channel's queue is paused.
    db.query_one("SELECT wa_send_text($1, '15550007001', 'your order shipped')", &[&ch.name]).unwrap();
    cluster().graph.fail_next("+15550007003", Fault::meta(131030));
    db.execute("UPDATE wa_channels SET allow_outside_window = true WHERE id = $1", &[&ch.id]).unwrap();
    db.query_one("SELECT wa_send_text($1, '15550007003', 'refused')", &[&ch.name]).unwrap();
    wait_until(
        &mut db,
        ch.id,
        "the first send read, the second failed",
        "SELECT bool_and(status IN ('read', 'failed')) AND count(*) = 2 FROM wa_messages WHERE channel_id = $1 AND direction = 'outbound' AND source IS DISTINCT FROM 'business_app'",
    );
    db.execute(
        "UPDATE wa_channels SET paused_at = now(), paused_reason = 'notifications test' WHERE id = $1",
        &[&ch.id],
    )
    .unwrap();
    db.query_one(
        "SELECT wa_send_text($1, '15550007001', 'code 123456', expires_at => now() + interval '1 second')",
        &[&ch.name],
    )
    .unwrap();
    wait_until(
        &mut db,
        ch.id,
        "the short-lived message's expiry",
        "SELECT bool_and(expires_at < now()) FROM wa_messages WHERE channel_id = $1 AND expires_at IS NOT NULL",
    );
    db.execute("UPDATE wa_channels SET paused_at = NULL, paused_reason = NULL WHERE id = $1", &[&ch.id]).unwrap();

    // wa_call: a missed call. wa_history: a chunk of shared history, then the business declines.
    post(payloads::call_value("wacid.ids.1", "15550007004", "terminate", Some("FAILED"), None, t));
    let history = HistoryMessage {
        wamid: "wamid.ids.history".into(),
        from_business: false,
        kind: "text".into(),
        body: "an old question".into(),
        timestamp: t - 3600,
        status: "READ".into(),
    };
    post(payloads::history_value(0, 1, 100, &[("15550007005".into(), vec![history])]));
    post(payloads::history_declined_value());
    // wa_contact: a customer stops marketing messages.
    let stopper = Customer { wa_id: "15550007006".into(), name: "Ola".into() };
    post(payloads::user_preferences_value(&stopper, None, "stop", t));
    // wa_action: an action (a block) ends.
    db.query_one("SELECT wa_block($1, ARRAY['15550007006'])", &[&ch.name]).unwrap();
    wait_until(
        &mut db,
        ch.id,
        "the block done",
        "SELECT bool_and(status = 'done') FROM wa_actions WHERE channel_id = $1",
    );

    wait_until(
        &mut db,
        ch.id,
        "the photo downloaded",
        "SELECT bool_and(j.status = 'done') FROM wa_media j WHERE j.channel_id = $1",
    );
    wait_until(
        &mut db,
        ch.id,
        "the short-lived message failed as expired",
        "SELECT bool_and(status = 'failed') FROM wa_messages WHERE channel_id = $1 AND expires_at IS NOT NULL",
    );

    // Every notification so far, every channel's (the other tests' too): ids only.
    let all = listener.drain_all();
    let problems: Vec<String> = all.iter().filter_map(|(c, p)| notification_problem(c, p)).collect();
    assert!(problems.is_empty(), "notifications that say more than ids:\n{}", problems.join("\n"));

    // This channel's: each kind, and each names a row of this channel.
    let ours: Vec<&(String, Value)> = all.iter().filter(|(_, p)| p["channel_id"] == ch.id).collect();
    let mut seen = BTreeMap::<&str, usize>::new();
    for (c, p) in &ours {
        *seen.entry(c.as_str()).or_default() += 1;
        let (sql, id) = match c.as_str() {
            "wa_message" => ("SELECT channel_id, contact_id FROM wa_messages WHERE id = $1", &p["id"]),
            "wa_status" => {
                ("SELECT channel_id, NULL::bigint FROM wa_messages WHERE id = $1 AND direction = 'outbound'", &p["id"])
            }
            "wa_media" => ("SELECT channel_id, NULL::bigint FROM wa_media WHERE message_id = $1", &p["message_id"]),
            "wa_call" => ("SELECT channel_id, contact_id FROM wa_calls WHERE id = $1", &p["id"]),
            "wa_contact" => ("SELECT channel_id, NULL::bigint FROM wa_contacts WHERE id = $1", &p["id"]),
            "wa_channel_event" => ("SELECT channel_id, NULL::bigint FROM wa_channel_events WHERE id = $1", &p["id"]),
            "wa_action" => ("SELECT channel_id, NULL::bigint FROM wa_actions WHERE id = $1", &p["id"]),
            _ => continue, // wa_group, wa_history: the channel's id is the whole payload
        };
        let row =
            db.query_opt(sql, &[&id.as_i64().unwrap()]).unwrap().unwrap_or_else(|| panic!("{c} {p}: no such row"));
        assert_eq!(row.get::<_, i64>(0), ch.id, "{c} {p}: a row of another channel");
        if p.get("contact_id").is_some() {
            assert_eq!(p["contact_id"], json!(row.get::<_, Option<i64>>(1)), "{c} {p}: not the row's contact");
        }
    }
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        {
            let mut all = channels.to_vec();
            all.sort_unstable();
            all
        },
        "not every kind of notification was produced: {seen:?}"
    );
    // The messages: the customer's, the echo, the group message (with its writer), the photo.
    assert_eq!(seen["wa_message"], 4, "{ours:?}");
    // The statuses: sent, delivered and read of the first send; failed; expired.
    assert_eq!(seen["wa_status"], 5, "{ours:?}");
}
