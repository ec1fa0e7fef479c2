//! Dropping and re-creating the extension under a running listener (as the README tells users
//! to do between 0.1.0 commits): POSTs are answered 503 while it is gone, and stored again once
//! it is back, by the same worker process, whose kept statements Postgres re-plans against the
//! new functions. A private cluster: the test drops the extension.

use e2e::wa_sim::payloads;
use e2e::{Cluster, poll};
use std::time::Duration;

#[test]
fn the_listener_serves_an_extension_dropped_and_created_again() {
    let cluster = Cluster::private(Duration::ZERO);
    let ch = cluster.add_channel("recreated");
    let post = |wamid: &str| {
        let payload = payloads::text_message(&ch.phone_number_id, wamid, "16505559201", "Rio", "hi", 1_767_000_000);
        ch.post_signed_to(&cluster, &payload).unwrap().status
    };
    assert_eq!(post("wamid.re.1"), 200);
    let listener_pid = || cluster.backend_pid("whatsapp_channel webhook listener");
    let pid = listener_pid();

    cluster.connect().batch_execute("DROP EXTENSION whatsapp_channel CASCADE").unwrap();
    // Within the listener's periodic re-read (5 s) it knows the extension is gone: 503.
    assert_eq!(
        poll(|| (post("wamid.re.2") == 503).then_some(())),
        Some(()),
        "POSTs were not refused once the extension was dropped"
    );

    cluster.connect().batch_execute("CREATE EXTENSION whatsapp_channel").unwrap();
    let mut client = cluster.connect();
    client
        .execute(
            "SELECT wa_add_channel($1, $2, $3, $4, $5)",
            &[&ch.name, &ch.phone_number_id, &ch.access_token, &ch.app_secret, &ch.verify_token],
        )
        .unwrap();
    assert_eq!(post("wamid.re.3"), 200, "the channel added to the new extension was not served at once");
    let stored: i64 =
        client.query_one("SELECT count(*) FROM wa_messages WHERE wamid = 'wamid.re.3'", &[]).unwrap().get(0);
    assert_eq!(stored, 1);
    // Statuses and a batch take the kept statements too.
    let status = payloads::status(&ch.phone_number_id, "wamid.re.out", "delivered", "16505559201", 1_767_000_001);
    assert_eq!(ch.post_signed_to(&cluster, &status).unwrap().status, 200);
    let statuses: i64 =
        client.query_one("SELECT count(*) FROM wa_message_statuses WHERE wamid = 'wamid.re.out'", &[]).unwrap().get(0);
    assert_eq!(statuses, 1);
    assert_eq!(listener_pid(), pid, "the listener was restarted instead of going on");
}
