//! What Meta says about the business acts on the channel (issue 27, items 3-5): a quality drop
//! and a lower throughput lower the send rate, a restriction pauses the queue until
//! wa_resume_channel(), a paused or recategorised template is refused, an older event never
//! overrides a newer one, and a field this version does not understand is counted (in
//! wa_channel_health and in the metrics) with its raw POST kept.

use e2e::wa_sim::payloads::{business_body, business_change};
use e2e::{Channel, DEADLINE, Listener, cluster, error_of, poll};
use serde_json::{Value, json};

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A channel of the WhatsApp Business Account `waba`.
fn channel_of(prefix: &str, waba: &str) -> Channel {
    let ch = cluster().add_channel(prefix);
    cluster().connect().execute("UPDATE wa_channels SET waba_id = $1 WHERE name = $2", &[&waba, &ch.name]).unwrap();
    ch
}

/// Posts wa-sim's business webhook `kind` (Meta's documented example) for `waba`, sent at `time`.
fn post(ch: &Channel, waba: &str, kind: &str, template: &str, time: i64) {
    let (field, value) = business_change(kind, template, "15550783881").unwrap();
    let answer = ch.post_signed(&business_body(waba, &ch.phone_number_id, field, value, time));
    if answer.status != 200 {
        let log = cluster().log();
        let why: Vec<&str> = log.lines().filter(|l| l.contains("ERROR") || l.contains("WARNING")).collect();
        panic!("{kind}: {} {}\n{}", answer.status, answer.body, why[why.len().saturating_sub(5)..].join("\n"));
    }
}

/// One column of the channel's row of wa_channel_health, as JSON.
fn health(ch: &Channel, column: &str) -> Value {
    let sql = format!("SELECT to_jsonb({column}) FROM wa_channel_health WHERE channel = $1");
    cluster().connect().query_one(&sql, &[&ch.name]).unwrap().get::<_, Option<Value>>(0).unwrap_or(Value::Null)
}

fn send_rate(ch: &Channel) -> i32 {
    cluster()
        .connect()
        .query_one("SELECT max_messages_per_second FROM wa_channels WHERE id = $1", &[&ch.id])
        .unwrap()
        .get(0)
}

/// The action recorded for the channel's latest event of `kind`.
fn last_action(ch: &Channel, kind: &str) -> Option<String> {
    cluster()
        .connect()
        .query_one(
            "SELECT action FROM wa_channel_events WHERE channel_id = $1 AND kind::text = $2 ORDER BY id DESC LIMIT 1",
            &[&ch.id, &kind],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_quality_drop_and_a_lower_throughput_lower_the_send_rate() {
    let waba = "7770001";
    let ch = channel_of("health-rate", waba);
    let mut db = cluster().connect();
    db.execute("UPDATE wa_channels SET max_messages_per_second = 1000 WHERE id = $1", &[&ch.id]).unwrap();
    let mut listener = Listener::new(&["wa_channel_event"]);
    let t = now();

    post(&ch, waba, "throughput_downgrade", "", t - 100);
    assert_eq!(send_rate(&ch), 80, "Meta's standard throughput");
    assert_eq!(health(&ch, "throughput"), json!(80));
    let action = last_action(&ch, "phone_number_quality").unwrap();
    assert!(
        action.contains("send rate lowered from 1000 to 80") && action.contains("max_messages_per_second"),
        "{action}"
    );
    let (_, n) = listener.next_matching(|_, p| p["channel_id"] == ch.id).expect("a wa_channel_event notification");
    let kind: String = db
        .query_one(
            "SELECT kind::text FROM wa_channel_events WHERE id = $1 AND channel_id = $2",
            &[&n["id"].as_i64().unwrap(), &ch.id],
        )
        .unwrap()
        .get(0);
    assert_eq!(kind, "phone_number_quality");

    // An upgrade does not raise the rate by itself: an operator does.
    post(&ch, waba, "throughput_upgrade", "", t - 90);
    assert_eq!((send_rate(&ch), health(&ch, "throughput")), (80, json!(1000)));
    db.execute("UPDATE wa_channels SET max_messages_per_second = 1000 WHERE id = $1", &[&ch.id]).unwrap();

    // The quality drops: the higher throughput is gone.
    post(&ch, waba, "quality_flagged", "", t - 50);
    assert_eq!(send_rate(&ch), 80);
    assert_eq!((health(&ch, "quality_rating"), health(&ch, "messaging_limit")), (json!("FLAGGED"), json!("TIER_10K")));
    // An older event delivered late changes nothing, neither the health nor the rate.
    db.execute("UPDATE wa_channels SET max_messages_per_second = 500 WHERE id = $1", &[&ch.id]).unwrap();
    post(&ch, waba, "quality_unflagged", "", t - 60);
    post(&ch, waba, "throughput_downgrade", "", t - 95);
    assert_eq!(health(&ch, "quality_rating"), json!("FLAGGED"));
    assert_eq!(send_rate(&ch), 500);

    // The delivery worker sends at the rate the channel has now.
    db.execute("SELECT wa_send_template($1, '15553330001', 'hello_world', 'en_US')", &[&ch.name]).unwrap();
    cluster().graph.wait_for(1, DEADLINE, |r| r.path.contains(&ch.phone_number_id));
}

#[test]
fn a_restriction_pauses_the_queue_until_resumed() {
    let waba = "7770002";
    let ch = channel_of("health-restricted", waba);
    let other = cluster().add_channel("health-free");
    let mut db = cluster().connect();
    post(&ch, waba, "account_restriction", "", now());
    let reason: Option<String> =
        db.query_one("SELECT paused_reason FROM wa_channels WHERE id = $1", &[&ch.id]).unwrap().get(0);
    let reason = reason.expect("the queue is paused");
    assert!(reason.contains("RESTRICTED_BIZ_INITIATED_MESSAGING") && reason.contains("wa_resume_channel"), "{reason}");
    assert_eq!(health(&ch, "account_status"), json!("ACCOUNT_RESTRICTION"));
    assert!(health(&ch, "account_event").as_str().unwrap().contains("RESTRICTED_BIZ_INITIATED_MESSAGING"));
    assert!(health(&ch, "account_event_at").is_string());
    assert!(last_action(&ch, "account_update").unwrap().contains("queue paused"));

    let held: i64 =
        db.query_one("SELECT wa_send_template($1, '15553330002', 'hello_world', 'en_US')", &[&ch.name]).unwrap().get(0);
    // Another channel's message goes out: the worker ran, and held the paused one back.
    db.execute("SELECT wa_send_template($1, '15553330003', 'hello_world', 'en_US')", &[&other.name]).unwrap();
    cluster().graph.wait_for(1, DEADLINE, |r| r.path.contains(&other.phone_number_id));
    let status: String = db.query_one("SELECT status FROM wa_messages WHERE id = $1", &[&held]).unwrap().get(0);
    assert_eq!(status, "queued");

    db.execute("SELECT wa_resume_channel($1)", &[&ch.name]).unwrap();
    cluster().graph.wait_for(1, DEADLINE, |r| r.path.contains(&ch.phone_number_id));
}

#[test]
fn a_paused_or_recategorised_template_is_refused() {
    let waba = "7770003";
    let ch = channel_of("health-templates", waba);
    cluster().graph.set_templates(
        waba,
        json!([{ "id": "594425479261596", "name": "order_update", "language": "en_US", "status": "APPROVED",
                 "category": "UTILITY", "components": [{ "type": "BODY", "text": "Your order has shipped." }] }]),
    );
    let mut db = cluster().connect();
    db.execute("SELECT wa_sync_templates($1)", &[&ch.name]).unwrap();
    let send = "SELECT wa_send_template($1, '15553330004', 'order_update', 'en_US')";
    let t = now();

    post(&ch, waba, "template_paused", "order_update", t - 100);
    let (msg, hint) = error_of(send, &[&ch.name]);
    assert!(msg.contains("'order_update' (en_US) is PAUSED by Meta since"), "{msg}");
    assert!(hint.contains("paused for 3 hours due to low quality") && hint.contains("resumes it by itself"), "{hint}");
    // Meta lifts the pause; an older pause delivered late does not bring it back.
    post(&ch, waba, "template_approved", "order_update", t - 50);
    post(&ch, waba, "template_paused", "order_update", t - 80);
    db.execute(send, &[&ch.name]).unwrap();

    post(&ch, waba, "template_quality", "order_update", t - 40);
    post(&ch, waba, "template_category", "order_update", t - 30);
    let row = db
        .query_one(
            "SELECT quality_score, category, previous_category FROM wa_templates WHERE channel_id = $1 AND name = 'order_update'",
            &[&ch.id],
        )
        .unwrap();
    let state: (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(state, ("YELLOW".into(), "MARKETING".into(), "UTILITY".into()));
    let (msg, hint) = error_of(send, &[&ch.name]);
    assert!(msg.contains("recategorised by Meta from UTILITY to MARKETING"), "{msg}");
    assert!(hint.contains("wa_sync_templates"), "{hint}");

    post(&ch, waba, "template_components", "order_update", t - 20);
    let marked: bool = db
        .query_one(
            "SELECT needs_sync_since IS NOT NULL FROM wa_templates WHERE channel_id = $1 AND name = 'order_update'",
            &[&ch.id],
        )
        .unwrap()
        .get(0);
    assert!(marked, "a components update marks the template for wa_sync_templates()");
    // Synced again: the operator accepted the new category (Meta's list now says MARKETING).
    cluster().graph.set_templates(
        waba,
        json!([{ "id": "594425479261596", "name": "order_update", "language": "en_US", "status": "APPROVED",
                 "category": "MARKETING", "components": [{ "type": "BODY", "text": "Your order has shipped." }] }]),
    );
    db.execute("SELECT wa_sync_templates($1)", &[&ch.name]).unwrap();
    db.execute(send, &[&ch.name]).unwrap();
}

#[test]
fn an_unknown_field_is_counted_and_kept_and_webhook_errors_are_events() {
    let ch = channel_of("health-unknown", "7770004");
    let t = now();
    post(&ch, "7770004", "unknown_field", "", t - 1);
    post(&ch, "7770004", "unknown_field", "", t);
    // Meta redelivers the second: the same event is counted once.
    post(&ch, "7770004", "unknown_field", "", t);
    assert_eq!(health(&ch, "unknown_fields"), json!({ "security": 2 }));
    let mut db = cluster().connect();
    let kept: i64 = db
        .query_one(
            "SELECT count(*) FROM wa_webhook_events WHERE channel_id = $1 AND outcome = 'partial' AND error LIKE '%\"security\" is not understood%'",
            &[&ch.id],
        )
        .unwrap()
        .get(0);
    assert_eq!(kept, 3, "the raw POSTs are kept, marked partial");
    let counted = poll(|| {
        let rows = db
            .query(
                "SELECT value FROM wa_metrics WHERE metric = 'whatsapp_channel_webhook_unknown_fields_total'
                   AND labels ->> 'channel' = $1 AND labels ->> 'field' = 'security'",
                &[&ch.name],
            )
            .unwrap();
        rows.first().map(|r| r.get::<_, f64>(0))
    });
    assert_eq!(counted, Some(2.0));

    // A webhook-level error (value.errors[] of a messages change) is an event of its number.
    post(&ch, "7770004", "webhook_error", "", now());
    let summary: String = db
        .query_one("SELECT summary FROM wa_channel_events WHERE channel_id = $1 AND kind = 'webhook_error'", &[&ch.id])
        .unwrap()
        .get(0);
    assert!(summary.starts_with("error 130429 Rate limit hit"), "{summary}");
}
