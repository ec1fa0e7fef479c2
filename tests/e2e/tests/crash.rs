//! Crash safety, on clusters of their own: the postmaster or a worker is SIGKILLed while
//! webhooks keep coming (and are retried until answered 200, as Meta does) or while messages
//! are being sent. Nothing acknowledged is lost, nothing is stored twice, and every queued
//! message is sent.

use e2e::wa_sim::payloads;
use e2e::{Cluster, DEADLINE};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Posts `total` messages, each retried until answered 200 (bounded), while `crash` runs.
fn post_through(cluster: &Cluster, total: usize, crash: impl FnOnce(&Mutex<BTreeSet<usize>>)) -> BTreeSet<usize> {
    let ch = cluster.add_channel("crash");
    let acked = Mutex::new(BTreeSet::new());
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(120);
            for i in 0..total {
                let payload = payloads::text_message(
                    &ch.phone_number_id,
                    &format!("wamid.crash.{i}"),
                    "16505559001",
                    "Cat",
                    &format!("m{i}"),
                    1,
                );
                loop {
                    assert!(Instant::now() < deadline, "message {i} never got a 200");
                    match ch.post_signed_to(cluster, &payload) {
                        Ok(a) if a.status == 200 => break,
                        _ => std::thread::sleep(Duration::from_millis(50)), // Meta retries too
                    }
                }
                acked.lock().unwrap().insert(i);
            }
            done.store(true, Ordering::Release);
        });
        crash(&acked);
    });
    assert!(done.load(Ordering::Acquire));
    acked.into_inner().unwrap()
}

fn stored_wamids(cluster: &Cluster) -> Vec<String> {
    cluster
        .connect_when_up()
        .query("SELECT wamid FROM wa_messages WHERE wamid LIKE 'wamid.crash.%' ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn wait_for_acks(acked: &Mutex<BTreeSet<usize>>, n: usize) {
    let deadline = Instant::now() + DEADLINE;
    while acked.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "the client made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn postmaster_sigkill_loses_no_acknowledged_webhook_and_stores_none_twice() {
    let cluster = Cluster::private(Duration::ZERO);
    let total = 300;
    let acked = post_through(&cluster, total, |acked| {
        wait_for_acks(acked, 60);
        cluster.crash_and_restart();
        wait_for_acks(acked, 180);
        cluster.crash_and_restart();
    });
    assert_eq!(acked.len(), total);
    let stored = stored_wamids(&cluster);
    let unique: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "a message was stored twice");
    assert_eq!(stored.len(), total, "every message the client sent is there in the end");
}

#[test]
fn listener_sigkill_loses_no_acknowledged_webhook() {
    let cluster = Cluster::private(Duration::ZERO);
    let total = 200;
    let acked = post_through(&cluster, total, |acked| {
        wait_for_acks(acked, 50);
        cluster.kill_backend("whatsapp_channel webhook listener");
    });
    assert_eq!(acked.len(), total);
    let stored = stored_wamids(&cluster);
    assert_eq!(stored.iter().collect::<BTreeSet<_>>().len(), total);
    assert_eq!(stored.len(), total);
}

#[test]
fn an_idle_delivery_worker_has_nothing_due() {
    // With nothing queued the worker must sleep until a commit wakes it: the next-due time it
    // sleeps by is NULL ("nothing"), not 0 ("now"), which would make it poll.
    let cluster = Cluster::private(Duration::ZERO);
    let due: Option<f64> = cluster.connect().query_one("SELECT _wa_next_due_in()", &[]).unwrap().get(0);
    assert_eq!(due, None);
    let ch = cluster.add_channel("idle");
    let mut db = cluster.connect();
    db.execute("UPDATE wa_channels SET allow_outside_window = true WHERE name = $1", &[&ch.name]).unwrap();
    db.execute("SELECT wa_send_text($1, '15551230000', 'one')", &[&ch.name]).unwrap();
    assert_eq!(cluster.graph.wait_for(1, DEADLINE, |r| r.path.contains(&ch.phone_number_id)).len(), 1);
    let after: Option<f64> = e2e::poll(|| {
        let sent: bool = db
            .query_one("SELECT bool_and(status = 'sent') FROM wa_messages WHERE direction = 'outbound'", &[])
            .unwrap()
            .get(0);
        sent.then(|| db.query_one("SELECT _wa_next_due_in()", &[]).unwrap().get(0))
    })
    .expect("the message is recorded as sent");
    assert_eq!(after, None);
}
