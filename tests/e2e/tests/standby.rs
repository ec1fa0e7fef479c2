//! A hot standby runs no worker and binds no port; promoted, it takes over within seconds,
//! without a restart: its listener stores webhooks and its delivery worker sends what was
//! queued on the old primary.

use e2e::{Cluster, DEADLINE, poll, try_http_get, wa_sim};
use std::time::{Duration, Instant};

#[test]
fn a_standby_stays_idle_and_takes_over_when_promoted() {
    let primary = Cluster::private(Duration::ZERO);
    let ch = primary.add_channel("standby");
    let mut db = primary.connect();
    // A customer writes, so a reply may be queued; the channel is paused first, so that the
    // reply is still queued when the standby is made.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let hello = wa_sim::payloads::text_message(&ch.phone_number_id, "wamid.standby.1", "15550003333", "Sam", "hi", now);
    assert_eq!(ch.post_signed_to(&primary, &hello).unwrap().status, 200);
    db.execute(
        "UPDATE wa_channels SET paused_at = now(), paused_reason = 'held for the standby test' WHERE name = $1",
        &[&ch.name],
    )
    .unwrap();
    let queued: i64 =
        db.query_one("SELECT wa_send_text($1, '15550003333', 'from the new primary')", &[&ch.name]).unwrap().get(0);

    let made = Instant::now();
    let standby = primary.standby();
    eprintln!("standby made and started in {:?}", made.elapsed());
    let mut replica = standby.connect();
    let in_recovery: bool = replica.query_one("SELECT pg_is_in_recovery()", &[]).unwrap().get(0);
    assert!(in_recovery);
    // Wait until the standby has replayed the queued message, then look at it for a while.
    let replayed = poll(|| {
        let n: i64 = replica.query_one("SELECT count(*) FROM wa_messages WHERE id = $1", &[&queued]).unwrap().get(0);
        (n == 1).then_some(())
    });
    assert!(replayed.is_some(), "the standby never replayed message {queued}");
    let url = standby.webhook_url(&ch.name);
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert!(try_http_get(&url).is_err(), "a standby must not listen for webhooks");
        std::thread::sleep(Duration::from_millis(200));
    }
    let workers: i64 = replica
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'whatsapp_channel%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(workers, 0, "no worker runs on a standby");
    assert!(!standby.log().contains("ERROR"), "the standby logged errors:\n{}", standby.log());

    // The standby is promoted (the old primary, its channel paused, sends nothing meanwhile).
    standby.promote();
    let promoted = Instant::now();
    let listening = poll(|| try_http_get(&url).ok().filter(|a| a.status == 405 || a.status == 403));
    assert!(listening.is_some(), "the promoted standby's listener never came up:\n{}", standby.log());
    let took = promoted.elapsed();
    eprintln!("the promoted standby's listener answered {took:?} after promotion");
    assert!(took < DEADLINE, "took {took:?}");
    let again = wa_sim::payloads::text_message(
        &ch.phone_number_id,
        "wamid.standby.2",
        "15550003333",
        "Sam",
        "still there?",
        now + 1,
    );
    assert_eq!(ch.post_signed_to(&standby, &again).unwrap().status, 200);
    // Its delivery worker sends what the old primary had queued, once the channel is resumed.
    standby.graph.require_token(&ch.phone_number_id, &ch.access_token);
    let mut db = standby.connect();
    db.execute("SELECT wa_set_access_token($1, $2)", &[&ch.name, &ch.access_token]).unwrap();
    let sent = poll(|| {
        let status: String = db.query_one("SELECT status FROM wa_messages WHERE id = $1", &[&queued]).unwrap().get(0);
        (status == "sent").then_some(())
    });
    assert!(
        sent.is_some(),
        "message {queued} queued on the old primary was not sent by the new one:\n{}",
        standby.log()
    );
}
