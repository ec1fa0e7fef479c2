//! An outage of the Graph API fails nothing and reorders nothing: sends that get no answer
//! never fail a message by count; once a channel has had nothing else for
//! `whatsapp_channel.outage_after`, it shows as unreachable, its queue waits and one message
//! probes every `outage_probe_every`; the first answer resumes the queue, each customer's
//! messages in order. A message past its `expires_at` fails as expired instead of going late.
//! Time-compressed: half a second stands for minutes, a probe every 50 ms for every 30 s.

use e2e::{Cluster, poll, poll_within, unsent};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[test]
fn a_long_outage_fails_nothing_and_delivery_resumes_in_order() {
    let cluster = Cluster::private_with(
        "whatsapp_channel.outage_after = 500\nwhatsapp_channel.outage_probe_every = 50\nwhatsapp_channel.graph_api_timeout = 2000",
    );
    let ch = cluster.add_channel("outage");
    let mut db = cluster.connect();
    db.execute("UPDATE wa_channels SET allow_outside_window = true WHERE name = $1", &[&ch.name]).unwrap();
    cluster.graph.set_unreachable(true);
    // Three messages to each of three customers, and one that is only worth sending soon.
    let mut ids = Vec::new();
    for i in 1..=3 {
        for c in 1..=3 {
            let id: i64 = db
                .query_one(
                    "SELECT wa_send_text($1, $2, $3)",
                    &[&ch.name, &format!("+1555666000{c}"), &format!("customer {c} message {i}")],
                )
                .unwrap()
                .get(0);
            ids.push(id);
        }
    }
    let short: i64 = db
        .query_one(
            "SELECT wa_send_text($1, '+15556660009', 'your code is 123456', expires_at => now() + interval '1 second')",
            &[&ch.name],
        )
        .unwrap()
        .get(0);

    let unreachable = poll(|| {
        let since: Option<std::time::SystemTime> = db
            .query_one("SELECT graph_api_unreachable_since FROM wa_channel_health WHERE channel = $1", &[&ch.name])
            .unwrap()
            .get(0);
        since
    });
    assert!(unreachable.is_some(), "the channel never showed as unreachable:\n{}", cluster.log());
    // Longer than the old budget of 25 attempts, which failed a message for good.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let most: i32 =
            db.query_one("SELECT max(attempts) FROM wa_messages WHERE id = ANY($1)", &[&ids]).unwrap().get(0);
        if most > 30 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the probes stalled at {most} attempts:\n{}\n{}",
            states(&mut db, &ch.name, &ids),
            cluster.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let failed: i64 = db
        .query_one("SELECT count(*) FROM wa_messages WHERE id = ANY($1) AND status = 'failed'", &[&ids])
        .unwrap()
        .get(0);
    assert_eq!(failed, 0, "an outage failed messages");
    // Probes only: one request at a time, every 50 ms, not the whole queue retrying.
    let tried = cluster.graph.received().iter().filter(|r| r.path.contains(&ch.phone_number_id)).count();
    let attempts: i64 = db
        .query_one(
            "SELECT sum(attempts) FROM wa_messages WHERE channel_id = (SELECT id FROM wa_channels WHERE name = $1)",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    assert!(tried as i64 <= attempts, "{tried} requests for {attempts} attempts");

    cluster.graph.set_unreachable(false);
    let sent = poll(|| (unsent(&mut db, &ids) == 0).then_some(()));
    assert!(
        sent.is_some(),
        "not every message went out after the outage:\n{}\n{}",
        states(&mut db, &ch.name, &ids),
        cluster.log()
    );
    let since: Option<std::time::SystemTime> = db
        .query_one("SELECT graph_api_unreachable_since FROM wa_channel_health WHERE channel = $1", &[&ch.name])
        .unwrap()
        .get(0);
    assert_eq!(since, None, "the first answer makes the channel reachable again");

    // Each customer got its messages in the order they were queued.
    let mut per_customer: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in cluster.graph.received().iter().filter(|r| r.path.contains(&ch.phone_number_id) && r.wamid.is_some()) {
        let body = r.json();
        per_customer
            .entry(body["to"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(body["text"]["body"].as_str().unwrap_or_default().to_string());
    }
    for c in 1..=3 {
        let expected: Vec<String> = (1..=3).map(|i| format!("customer {c} message {i}")).collect();
        assert_eq!(per_customer.get(&format!("+1555666000{c}")), Some(&expected), "{per_customer:?}");
    }
    // The code was not sent late: it failed, saying why.
    let (status, title): (String, Option<String>) = {
        let row = db.query_one("SELECT status, error_title FROM wa_messages WHERE id = $1", &[&short]).unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(status, "failed");
    assert!(title.as_deref().is_some_and(|t| t.contains("expired at") && t.contains("not sent late")), "{title:?}");
    assert!(!per_customer.contains_key("+15556660009"), "the expired code reached Meta");
}

/// Meta's pair rate (one message every 6 s to a customer, bursts of up to 45 within 6 s) counts
/// messages that reach the customer, not sends that got no answer. Charged for every probe, one
/// customer's queue owed 6 s per probe: after 45 (2 s of probing at 50 ms) its head was deferred
/// for 270 s, the probes stopped, and the first answer found it still deferred. (The pair
/// interval is not time-compressed here, which makes this quick to force: 50 probes to one
/// customer, which the pair rate would allow only after minutes if they counted.)
#[test]
fn probes_that_get_no_answer_do_not_use_up_the_customers_pair_rate() {
    let cluster = Cluster::private_with(
        "whatsapp_channel.outage_after = 500\nwhatsapp_channel.outage_probe_every = 50\nwhatsapp_channel.graph_api_timeout = 2000",
    );
    let ch = cluster.add_channel("pair");
    let mut db = cluster.connect();
    db.execute("UPDATE wa_channels SET allow_outside_window = true WHERE name = $1", &[&ch.name]).unwrap();
    cluster.graph.set_unreachable(true);
    let mut ids = Vec::new();
    for i in 1..=2 {
        let id: i64 = db
            .query_one("SELECT wa_send_text($1, '+15556667001', $2)", &[&ch.name, &format!("message {i}")])
            .unwrap()
            .get(0);
        ids.push(id);
    }
    // Past the burst of 45: each attempt is a probe of the head of this one customer's queue.
    let probed = poll_within(Duration::from_secs(60), || {
        let attempts: i32 = db.query_one("SELECT attempts FROM wa_messages WHERE id = $1", &[&ids[0]]).unwrap().get(0);
        (attempts > 50).then_some(())
    });
    assert!(probed.is_some(), "the probes stopped:\n{}\n{}", states(&mut db, &ch.name, &ids), cluster.log());

    cluster.graph.set_unreachable(false);
    let sent = poll(|| (unsent(&mut db, &ids) == 0).then_some(()));
    assert!(
        sent.is_some(),
        "the queue did not resume after the outage:\n{}\n{}",
        states(&mut db, &ch.name, &ids),
        cluster.log()
    );
    let bodies: Vec<String> = cluster
        .graph
        .received()
        .iter()
        .filter(|r| r.path.contains(&ch.phone_number_id) && r.wamid.is_some())
        .map(|r| r.json()["text"]["body"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(bodies, ["message 1", "message 2"], "each sent once, in order");
}

/// What each message was left as (status, attempts, when it is due, why it waits) and its
/// channel's outage state: what a failed assertion needs to tell a stuck queue from a slow one.
fn states(db: &mut postgres::Client, channel: &str, ids: &[i64]) -> String {
    let mut lines: Vec<String> = db
        .query(
            "SELECT format('message %s: %s, attempts %s, due in %s, %s', id, status, attempts, next_attempt_at - now(), error_title)
               FROM wa_messages WHERE id = ANY($1) ORDER BY id",
            &[&ids],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    lines.push(
        db.query_one(
            "SELECT format('channel: unreachable since %s, next probe in %s', unreachable_since, next_probe_at - now())
               FROM wa_channels WHERE name = $1",
            &[&channel],
        )
        .unwrap()
        .get(0),
    );
    lines.join("\n")
}

#[test]
fn an_authentication_template_expires_by_the_channels_default_and_the_past_is_refused() {
    let cluster = Cluster::private(Duration::ZERO);
    let ch = cluster.add_channel("expiry");
    let mut db = cluster.connect();
    db.execute(
        "UPDATE wa_channels SET authentication_template_ttl = interval '10 minutes' WHERE name = $1",
        &[&ch.name],
    )
    .unwrap();
    db.execute(
        "INSERT INTO wa_templates (channel_id, name, language, status, category, components)
         SELECT id, 'login_code', 'en_US', 'APPROVED', 'AUTHENTICATION', '[{\"type\":\"BODY\",\"text\":\"{{1}} is your code\"}]'
           FROM wa_channels WHERE name = $1",
        &[&ch.name],
    )
    .unwrap();
    let id: i64 = db
        .query_one(
            "SELECT wa_send_template($1, '+15556661111', 'login_code', 'en_US',
                    '[{\"type\":\"body\",\"parameters\":[{\"type\":\"text\",\"text\":\"123456\"}]}]')",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    let ttl_kept: bool = db
        .query_one("SELECT expires_at = created_at + interval '10 minutes' FROM wa_messages WHERE id = $1", &[&id])
        .unwrap()
        .get(0);
    assert!(ttl_kept);
    let e = db
        .execute(
            "SELECT wa_send_text($1, '+15556661111', 'late', expires_at => now() - interval '1 minute')",
            &[&ch.name],
        )
        .unwrap_err();
    let db_error = e.as_db_error().unwrap();
    assert!(db_error.message().contains("is not in the future"), "{e}");
}
