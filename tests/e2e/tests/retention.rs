//! Retention: the maintenance worker deletes raw webhook POSTs older than
//! whatsapp_channel.webhook_event_retention (and drops media bytes older than
//! media_retention), and a redelivery after the purge still adds nothing. A private cluster,
//! since the settings are server-wide.

use e2e::{Cluster, poll};
use std::time::Duration;

#[test]
fn expired_events_are_deleted_and_redeliveries_still_deduplicated() {
    let cluster = Cluster::private(Duration::ZERO);
    let ch = cluster.add_channel("retention");
    let mut client = cluster.connect();
    let payload = e2e::wa_sim::payloads::text_message(
        &ch.phone_number_id,
        "wamid.retention.1",
        "16505558101",
        "Rae",
        "hi",
        1_767_000_000,
    );
    assert_eq!(ch.post_signed_to(&cluster, &payload).unwrap().status, 200);
    let events = |client: &mut postgres::Client| -> i64 {
        client
            .query_one(
                "SELECT count(*) FROM wa_webhook_events e JOIN wa_channels c ON c.id = e.channel_id WHERE c.name = $1",
                &[&ch.name],
            )
            .unwrap()
            .get(0)
    };
    assert_eq!(events(&mut client), 1);
    // Make the event and a downloaded file old, as a month would.
    client.execute("UPDATE wa_webhook_events SET received_at = now() - interval '2 days'", &[]).unwrap();
    let message_id: i64 =
        client.query_one("SELECT id FROM wa_messages WHERE wamid = 'wamid.retention.1'", &[]).unwrap().get(0);
    let channel_id: i64 = client.query_one("SELECT id FROM wa_channels WHERE name = $1", &[&ch.name]).unwrap().get(0);
    client
        .execute(
            "INSERT INTO wa_media (message_id, channel_id, media_id, status, content, updated_at)
             VALUES ($1, $2, 'm1', 'done', 'bytes', now() - interval '2 days')",
            &[&message_id, &channel_id],
        )
        .unwrap();

    // The defaults keep both (30 days; media forever).
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(events(&mut client), 1, "a 2-day-old event is within the default 30 days");

    for sql in [
        "ALTER SYSTEM SET whatsapp_channel.webhook_event_retention = '1d'",
        "ALTER SYSTEM SET whatsapp_channel.media_retention = '1d'",
        "SELECT pg_reload_conf()",
    ] {
        client.batch_execute(sql).unwrap();
    }
    // The reload wakes the maintenance worker, which purges at once.
    assert_eq!(poll(|| (events(&mut client) == 0).then_some(0)), Some(0), "the expired event was not deleted");
    let purged = poll(|| {
        let r = client
            .query_one(
                "SELECT content IS NULL AND purged_at IS NOT NULL FROM wa_media WHERE message_id = $1",
                &[&message_id],
            )
            .unwrap();
        r.get::<_, bool>(0).then_some(())
    });
    assert!(purged.is_some(), "the expired media bytes were not dropped");
    cluster.wait_for_log("deleted 1 webhook events older than 86400 s");

    // Meta redelivers the same message after its raw event is gone: still one message.
    assert_eq!(ch.post_signed_to(&cluster, &payload).unwrap().status, 200);
    let messages: i64 =
        client.query_one("SELECT count(*) FROM wa_messages WHERE wamid = 'wamid.retention.1'", &[]).unwrap().get(0);
    assert_eq!(messages, 1);
    assert_eq!(events(&mut client), 1, "the redelivery is logged as a new raw event");
}
