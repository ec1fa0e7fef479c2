//! Each message reaches Meta once: through a crash of the delivery worker or of the whole
//! server while sends are in flight (the outbox id travels in `biz_opaque_callback_data`, and
//! the status that echoes it records the send, so an interrupted message is sent again only if
//! no status came within `whatsapp_channel.resend_interrupted_after`), through a COMMIT of the
//! results that fails, and through a result that cannot be recorded at all. An app that calls
//! `wa_send_*` again with the same idempotency key gets the first message, not a second one.

use e2e::wa_sim::graph::{Fault, GraphSim};
use e2e::{Channel, Cluster, DEADLINE, cluster, poll, poll_within};
use postgres::Client;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The Graph API requests for `ch`, per outbox id (the callback data our sends carry).
fn requests_per_message(graph: &GraphSim, ch: &Channel) -> BTreeMap<i64, Vec<Option<String>>> {
    let mut per = BTreeMap::<i64, Vec<Option<String>>>::new();
    for r in graph.received().iter().filter(|r| r.path.contains(&ch.phone_number_id)) {
        let callback = r.json()["biz_opaque_callback_data"].as_str().unwrap_or_default().to_string();
        let id: i64 = callback.strip_prefix("whatsapp_channel:").and_then(|n| n.parse().ok()).unwrap_or_else(|| {
            panic!("a send without the outbox id in biz_opaque_callback_data: {}", r.body);
        });
        per.entry(id).or_default().push(r.wamid.clone());
    }
    per
}

/// Queues `n` texts on `ch` to as many customers (the window is ignored); their ids.
fn queue(db: &mut Client, ch: &Channel, n: i32) -> Vec<i64> {
    db.execute(
        "UPDATE wa_channels SET allow_outside_window = true, max_messages_per_second = 1000 WHERE name = $1",
        &[&ch.name],
    )
    .unwrap();
    db.query(
        "SELECT wa_send_text($1, '+1555444' || lpad(i::text, 4, '0'), 'once ' || i) FROM generate_series(1, $2) i",
        &[&ch.name, &n],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The status of message `id`; an error when the connection dropped (a crash resets every
/// backend), for the caller to count as "not yet".
fn status_of(db: &mut Client, id: i64) -> Result<String, postgres::Error> {
    Ok(db.query_one("SELECT status FROM wa_messages WHERE id = $1", &[&id])?.get(0))
}

/// Waits until every message of `ids` is recorded as sent (or later: delivered, read).
fn wait_until_sent(cluster: &Cluster, ids: &[i64], within: Duration) {
    let deadline = Instant::now() + within;
    // (A killed worker makes the postmaster reset every backend: a connection may drop under
    // the query, which then counts as "not yet".)
    let mut left: Option<Vec<(String, i64)>> = None;
    loop {
        if let Ok(rows) = cluster.connect_when_up().query(
            "SELECT status, count(*) FROM wa_messages WHERE id = ANY($1) AND status NOT IN ('sent', 'delivered', 'read') GROUP BY 1",
            &[&ids],
        ) {
            let now_left: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            if now_left.is_empty() {
                return;
            }
            left = Some(now_left);
        }
        assert!(Instant::now() < deadline, "not sent: {left:?}\n{}", cluster.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every message was requested, and none whose first request Meta accepted and whose status
/// reached the listener was requested again.
fn assert_sent_once(cluster: &Cluster, ch: &Channel, ids: &[i64]) {
    let per = requests_per_message(&cluster.graph, ch);
    let posted: BTreeSet<String> = cluster.graph.statuses_posted().into_iter().map(|(wamid, _)| wamid).collect();
    let missing: Vec<&i64> = ids.iter().filter(|id| !per.contains_key(id)).collect();
    assert!(missing.is_empty(), "never requested: {missing:?}");
    let twice: Vec<(&i64, &Vec<Option<String>>)> = per
        .iter()
        .filter(|(_, wamids)| wamids.len() > 1 && wamids[0].as_ref().is_some_and(|w| posted.contains(w)))
        .collect();
    assert!(twice.is_empty(), "sent again although the status of the first send was posted: {twice:?}");
}

#[test]
fn a_delivery_worker_killed_mid_batch_sends_each_message_once() {
    let cluster = Cluster::private_with("whatsapp_channel.resend_interrupted_after = 10");
    let ch = cluster.add_channel("once-kill");
    cluster.enable_status_webhooks(&ch);
    let ids = queue(&mut cluster.connect(), &ch, 150);
    assert!(cluster.graph.wait_for(20, DEADLINE, |r| r.path.contains(&ch.phone_number_id)).len() >= 20);
    cluster.kill_backend("whatsapp_channel delivery");
    wait_until_sent(&cluster, &ids, Duration::from_secs(60));
    // (A request the kill cut off before wa-sim had all of it got no status, and goes out
    // again after the wait: only those may count twice.)
    assert_sent_once(&cluster, &ch, &ids);
}

#[test]
fn a_server_killed_while_sending_sends_again_only_what_heard_nothing() {
    let cluster = Cluster::private_with("whatsapp_channel.resend_interrupted_after = 10");
    let ch = cluster.add_channel("once-crash");
    cluster.enable_status_webhooks(&ch);
    let ids = queue(&mut cluster.connect(), &ch, 300);
    assert!(cluster.graph.wait_for(40, DEADLINE, |r| r.path.contains(&ch.phone_number_id)).len() >= 40);
    cluster.crash_and_restart();
    wait_until_sent(&cluster, &ids, Duration::from_secs(90));
    assert_sent_once(&cluster, &ch, &ids);
}

#[test]
fn a_commit_of_the_results_that_fails_sends_nothing_twice() {
    let cluster = Cluster::private(Duration::ZERO);
    let ch = cluster.add_channel("once-commit");
    let mut db = cluster.connect();
    // A user's deferred check that fails the first COMMIT recording a send (the sequence is
    // not rolled back with it, so it fails once).
    db.batch_execute(
        "CREATE SEQUENCE fail_once;
         CREATE FUNCTION fail_first_sent() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF nextval('fail_once') = 1 THEN RAISE EXCEPTION 'a deferred check refuses this COMMIT once'; END IF;
             RETURN NULL;
         END $$;
         CREATE CONSTRAINT TRIGGER fail_first_sent AFTER UPDATE ON wa_messages DEFERRABLE INITIALLY DEFERRED
             FOR EACH ROW WHEN (OLD.status = 'sending' AND NEW.status = 'sent') EXECUTE FUNCTION fail_first_sent();",
    )
    .unwrap();
    let ids = queue(&mut db, &ch, 5);
    wait_until_sent(&cluster, &ids, DEADLINE);
    let per = requests_per_message(&cluster.graph, &ch);
    assert_eq!(per.len(), ids.len());
    assert!(per.values().all(|r| r.len() == 1), "each message is requested once: {per:?}");
    let log = cluster.log();
    assert!(log.contains("did not commit; they will be recorded again, not sent again"), "{log}");
    assert_eq!(log.matches("delivery worker started").count(), 1, "the worker went on:\n{log}");
}

#[test]
fn a_result_that_cannot_be_recorded_fails_the_message_with_the_reason() {
    // Two sends answered with the same wamid (as a simulator restarted against the same
    // database once did): the second cannot be recorded (UNIQUE (channel_id, wamid)). It must
    // end as failed, with why, after a few tries, and never be sent again.
    let cluster = Cluster::private(Duration::ZERO);
    let ch = cluster.add_channel("once-record");
    let mut db = cluster.connect();
    for to in ["+15554440001", "+15554440002"] {
        cluster.graph.fail_next(to, Fault::AcceptAs("wamid.once.same".into()));
    }
    let ids = queue(&mut db, &ch, 2);
    // Whichever is recorded first is sent; the other ends as failed, with why.
    let ended = poll(|| {
        let rows = db
            .query("SELECT status, error_title FROM wa_messages WHERE id = ANY($1) ORDER BY status", &[&ids])
            .unwrap();
        let ended: Vec<(String, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        (ended.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>() == ["failed", "sent"]).then_some(ended)
    });
    let ended = ended.unwrap_or_else(|| panic!("one message did not fail:\n{}", cluster.log()));
    let title = ended[0].1.clone().unwrap_or_default();
    assert!(title.contains("could not be recorded") && title.contains("wamid.once.same"), "{title}");
    assert_eq!(requests_per_message(&cluster.graph, &ch).values().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
}

#[test]
fn a_customers_next_message_goes_out_once_the_one_before_is_recorded_alone() {
    // The customer's first message is accepted with a wamid another message of the channel
    // has already, so its result cannot be recorded with the others (UNIQUE (channel_id,
    // wamid)); after a few tries it is recorded alone, as failed. The second message heads the
    // customer's queue from then on, and nothing else happens: no commit wakes the worker, and
    // the last claim saw nothing due (the first was in flight). It must go out then, not at
    // the worker's 10 s safety net.
    let cluster = Cluster::private(Duration::ZERO);
    let ch = cluster.add_channel("once-alone");
    let mut db = cluster.connect();
    let status = |db: &mut Client, id: i64| status_of(db, id).unwrap();
    cluster.graph.fail_next("+15554440001", Fault::AcceptAs("wamid.once.taken".into()));
    let taken = queue(&mut db, &ch, 1)[0];
    let sent = poll(|| (status(&mut db, taken) == "sent").then_some(()));
    assert!(sent.is_some(), "the first send was not recorded:\n{}", cluster.log());
    cluster.graph.fail_next("+15554440002", Fault::AcceptAs("wamid.once.taken".into()));
    let ids: Vec<i64> = db
        .query(
            "SELECT wa_send_text($1, '+15554440002', t) FROM unnest(ARRAY['first', 'second']) WITH ORDINALITY AS u(t, n) ORDER BY n",
            &[&ch.name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let failed = poll(|| (status(&mut db, ids[0]) == "failed").then_some(()));
    assert!(failed.is_some(), "the first message was not recorded alone as failed:\n{}", cluster.log());
    // (A turn takes milliseconds; the safety net is 10 s.)
    let next = poll_within(Duration::from_secs(5), || (status(&mut db, ids[1]) == "sent").then_some(()));
    assert!(next.is_some(), "the second message waited for the safety net:\n{}", cluster.log());
}

#[test]
fn a_status_that_records_an_interrupted_send_lets_the_customers_next_message_go() {
    // A restart interrupts a send in flight: the message goes back to the queue, to be sent
    // again only after resend_interrupted_after (60 s here) unless its status comes first, and
    // the customer's next message waits behind it. The status comes, naming the message in
    // biz_opaque_callback_data: the send is recorded from it, and the next message must go out
    // then, not at the worker's 10 s safety net (nothing else wakes an idle worker).
    let cluster = Cluster::private_with("whatsapp_channel.resend_interrupted_after = 60");
    let ch = cluster.add_channel("once-late");
    let to = "+15554440001";
    let send = |to: &str, text: &str| -> i64 {
        cluster.connect().query_one("SELECT wa_send_text($1, $2, $3)", &[&ch.name, &to, &text]).unwrap().get(0)
    };
    let status = |id: i64| status_of(&mut cluster.connect_when_up(), id).ok();
    cluster.graph.fail_next(to, Fault::Timeout(Duration::from_secs(120)));
    let first = queue(&mut cluster.connect(), &ch, 1)[0];
    // (wa-sim holds the request; it lists a request only once it has answered it.)
    let in_flight = poll(|| (status(first).as_deref() == Some("sending")).then_some(()));
    assert!(in_flight.is_some(), "the first message was not claimed:\n{}", cluster.log());
    let next = send(to, "next");
    cluster.kill_backend("whatsapp_channel delivery");
    let requeued = poll(|| {
        (status(first).as_deref() == Some("queued")
            && cluster.log().contains("interrupted by a restart are queued again"))
        .then_some(())
    });
    assert!(requeued.is_some(), "the interrupted send was not queued again:\n{}", cluster.log());
    // Another customer's message goes out: the worker has looked at the queue since, and the
    // next message stayed behind the first.
    let other = send("+15554440002", "other");
    assert!(poll(|| (status(other).as_deref() == Some("sent")).then_some(())).is_some(), "{}", cluster.log());
    assert_eq!(status(next).as_deref(), Some("queued"), "the next message went before the first");

    let mut late =
        wa_sim::payloads::status(&ch.phone_number_id, "wamid.once.late", "sent", "15554440001", 1_767_000_000);
    late["entry"][0]["changes"][0]["value"]["statuses"][0]["biz_opaque_callback_data"] =
        format!("whatsapp_channel:{first}").into();
    assert_eq!(ch.post_signed_to(&cluster, &late).unwrap().status, 200);
    assert_eq!(status(first).as_deref(), Some("sent"), "the status did not record the send");
    // (A turn takes milliseconds; the safety net is 10 s.)
    let sent = poll_within(Duration::from_secs(5), || (status(next).as_deref() == Some("sent")).then_some(()));
    assert!(sent.is_some(), "the next message waited for the safety net:\n{}", cluster.log());
    // (The held request, if it left before the kill, is listed only when wa-sim lets it go.)
    let per = requests_per_message(&cluster.graph, &ch);
    assert!(!per.contains_key(&first), "the first message was sent again: {per:?}");
    assert_eq!((per[&next].len(), per[&other].len()), (1, 1), "{per:?}");
}

#[test]
fn the_same_idempotency_key_queues_one_message() {
    let ch = cluster().add_channel("idem");
    ch.customer_writes("16505552001");
    let mut db = cluster().connect();
    let send = |db: &mut Client, key: &str| -> i64 {
        db.query_one("SELECT wa_send_text($1, '16505552001', 'only once', idempotency_key => $2)", &[&ch.name, &key])
            .unwrap()
            .get(0)
    };
    let first = send(&mut db, "order-17-confirmation");
    // Again in another transaction, before and after the first is sent.
    assert_eq!(send(&mut db, "order-17-confirmation"), first);
    let sent = poll(|| {
        let s: String = db.query_one("SELECT status FROM wa_messages WHERE id = $1", &[&first]).unwrap().get(0);
        (s != "queued" && s != "sending").then_some(())
    });
    assert!(sent.is_some());
    assert_eq!(send(&mut db, "order-17-confirmation"), first);
    // Twice in one transaction, and every other kind of send takes the key too.
    let mut tx = db.transaction().unwrap();
    let again: i64 = tx
        .query_one(
            "SELECT wa_send_media($1, '16505552001', 'image', 'https://example.com/a.jpg', idempotency_key => 'order-17-confirmation')",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    assert_eq!(again, first, "the key names the message, whatever the call");
    tx.commit().unwrap();
    let other = send(&mut db, "order-18-confirmation");
    assert_ne!(other, first);
    let rows: i64 = db
        .query_one(
            "SELECT count(*) FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = $1 AND m.direction = 'outbound'",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows, 2);
    assert!(poll(|| (requests_per_message(&cluster().graph, &ch).len() == 2).then_some(())).is_some());
    std::thread::sleep(Duration::from_millis(300));
    let per = requests_per_message(&cluster().graph, &ch);
    assert_eq!(per.get(&first).map(Vec::len), Some(1), "one request for the key's message: {per:?}");
    // Another channel may use the same key for its own message.
    let other_channel = cluster().add_channel("idem-other");
    other_channel.customer_writes("16505552001");
    let theirs: i64 = db
        .query_one(
            "SELECT wa_send_text($1, '16505552001', 'theirs', idempotency_key => 'order-17-confirmation')",
            &[&other_channel.name],
        )
        .unwrap()
        .get(0);
    assert_ne!(theirs, first);
}

#[test]
fn a_shutdown_with_sends_in_flight_sends_none_twice() {
    // Meta answers in 8 s, longer than a shutdown waits for answers (5 s): the sends are in
    // flight when the worker exits. Meta accepted them, and their statuses, retried until the
    // server is back, record them; none is sent again.
    let cluster = Cluster::private(Duration::from_secs(8));
    let ch = cluster.add_channel("once-stop");
    cluster.enable_status_webhooks(&ch);
    let mut db = cluster.connect();
    let ids = queue(&mut db, &ch, 3);
    let claimed = poll(|| {
        let sending: i64 = db
            .query_one("SELECT count(*) FROM wa_messages WHERE id = ANY($1) AND status = 'sending'", &[&ids])
            .unwrap()
            .get(0);
        (sending == 3).then_some(())
    });
    assert!(claimed.is_some(), "the sends never went out");
    drop(db);
    cluster.stop();
    cluster.start_again();
    wait_until_sent(&cluster, &ids, Duration::from_secs(60));
    let per = requests_per_message(&cluster.graph, &ch);
    assert_eq!(per.len(), 3);
    assert!(per.values().all(|r| r.len() == 1), "each message is requested once: {per:?}");
}
