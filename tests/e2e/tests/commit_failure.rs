//! A batch whose COMMIT fails is answered 503 (Meta redelivers) and the listener goes on: the
//! next POST is stored by the same process. A private cluster, since the test adds a trigger
//! that makes some commits fail.

use e2e::wa_sim::payloads;
use e2e::{Cluster, poll};
use std::time::Duration;

#[test]
fn a_failed_commit_answers_503_and_the_listener_goes_on() {
    let cluster = Cluster::private(Duration::ZERO);
    let ch = cluster.add_channel("commitfails");
    let mut client = cluster.connect();
    // A deferred constraint trigger runs at COMMIT: raising there fails the listener's commit.
    client
        .batch_execute(
            "CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.body LIKE '%fail at commit%' THEN
                     RAISE EXCEPTION 'this commit fails (test)';
                 END IF;
                 RETURN NULL;
             END $$;
             CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON wa_messages
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit();",
        )
        .unwrap();
    let listener_pid = || cluster.backend_pid("whatsapp_channel webhook listener");
    let pid = listener_pid();

    let failing =
        payloads::text_message(&ch.phone_number_id, "wamid.cf.1", "16505559101", "Cy", "fail at commit", 1_767_000_000);
    let answer = ch.post_signed_to(&cluster, &failing).expect("an answer, not a dropped connection");
    assert_eq!(answer.status, 503, "{}", answer.body);
    let stored = |client: &mut postgres::Client, wamid: &str| -> i64 {
        client.query_one("SELECT count(*) FROM wa_messages WHERE wamid = $1", &[&wamid]).unwrap().get(0)
    };
    assert_eq!(stored(&mut client, "wamid.cf.1"), 0);
    let events: i64 = client.query_one("SELECT count(*) FROM wa_webhook_events", &[]).unwrap().get(0);
    assert_eq!(events, 0, "nothing of the failed batch is kept");

    let fine =
        payloads::text_message(&ch.phone_number_id, "wamid.cf.2", "16505559101", "Cy", "all good", 1_767_000_001);
    assert_eq!(ch.post_signed_to(&cluster, &fine).unwrap().status, 200);
    assert_eq!(stored(&mut client, "wamid.cf.2"), 1);
    assert_eq!(listener_pid(), pid, "the listener was restarted instead of going on");
    cluster.wait_for_log("did not commit, answered 503: this commit fails (test)");

    // Meta redelivers once the cause is gone, and it is stored.
    client.batch_execute("DROP TRIGGER fail_at_commit ON wa_messages").unwrap();
    assert_eq!(ch.post_signed_to(&cluster, &failing).unwrap().status, 200);
    assert_eq!(poll(|| (stored(&mut client, "wamid.cf.1") == 1).then_some(())), Some(()));
}
