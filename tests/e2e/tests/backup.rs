//! Backups: `pg_dump` of a database in use (plain and custom format), restored into a new
//! database, gives back every row of every table of the extension (channels and their
//! credentials, contacts, conversations, groups, calls, templates, media, queued, sent and
//! failed messages, statuses, counters and the raw webhook log). Served by the listener and the
//! delivery worker, the restored database works: a webhook is stored in it, a new send gets a
//! fresh id and is delivered, and what was queued before the dump is delivered once.

use e2e::wa_sim::graph::Fault;
use e2e::wa_sim::payloads::{self, Customer};
use e2e::{Channel, Cluster, counts_written, poll, run, table_digests};
use postgres::{Client, NoTls};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn bin(name: &str) -> PathBuf {
    e2e::bindir().join(name)
}

fn dsn_of(cluster: &Cluster, database: &str) -> String {
    format!("{} dbname={database}", cluster.dsn())
}

fn post(cluster: &Cluster, ch: &Channel, value: serde_json::Value) {
    let answer = ch.post_signed_to(cluster, &payloads::envelope(&ch.phone_number_id, value)).unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// Waits until the workers have nothing left to do in `db`: no send in flight or due, every
/// download finished, and the read status of `read_message` in.
fn wait_until_quiet(db: &mut Client, read_message: i64) {
    let quiet = poll(|| {
        let row = db
            .query_one(
                "SELECT (SELECT status FROM wa_messages WHERE id = $1),
                        (SELECT count(*) FROM wa_media WHERE status IN ('pending', 'downloading')),
                        (SELECT count(*) FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id
                          WHERE m.status = 'sending' OR (m.status = 'queued' AND c.paused_at IS NULL))",
                &[&read_message],
            )
            .unwrap();
        let (status, downloads, sending): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
        (status == "read" && downloads == 0 && sending == 0).then_some(())
    });
    assert!(quiet.is_some(), "the workers did not settle");
}

#[test]
fn a_dump_restores_the_whole_product_and_the_restored_database_works() {
    let cluster = Cluster::private(Duration::ZERO);
    let live = cluster.add_channel("backup");
    cluster.enable_status_webhooks(&live);
    let held = cluster.add_channel("backup-held");
    let mut db = cluster.connect();
    let ada = Customer { wa_id: "16505551001".into(), name: "Ada".into() };
    let bob = Customer { wa_id: "16505551002".into(), name: "Bob".into() };

    // Inbound: texts, a photo (downloaded), a group, a call; a template; a raw event.
    post(&cluster, &live, payloads::message_value("text", "wamid.backup.in.1", &ada, "hello", now()).unwrap());
    let photo = cluster.graph.add_media("image/jpeg", b"\xff\xd8 a small photo".to_vec());
    let mut image = payloads::message_value("image", "wamid.backup.in.2", &ada, "a photo", now()).unwrap();
    image["messages"][0]["image"]["id"] = photo.clone().into();
    image["messages"][0]["image"]["sha256"] = e2e::wa_sim::graph::sha256_base64(b"\xff\xd8 a small photo").into();
    post(&cluster, &live, image);
    post(&cluster, &live, payloads::message_value("text", "wamid.backup.in.3", &bob, "hi there", now()).unwrap());
    post(&cluster, &live, payloads::group_lifecycle_value("group_create", "backup-group", "Team", now() - 10, false));
    // A join request of the group, listed through the action outbox (wa_group_join_requests).
    let asker = cluster.graph.add_join_request("backup-group", "16505551004");
    post(&cluster, &live, payloads::call_value("wacid.backup.1", &ada.wa_id, "connect", None, None, now()));
    post(&cluster, &live, payloads::user_id_update_value(&ada.wa_id, "US.backup.ada.1", "US.backup.ada.2", now()));
    // What Meta says about the account: a channel event (the display name approved).
    db.execute("UPDATE wa_channels SET waba_id = '7770001' WHERE name = $1", &[&live.name]).unwrap();
    let (field, value) = payloads::business_change("name_approved", "order_update", "15550783881").unwrap();
    let answer = live
        .post_signed_to(&cluster, &payloads::business_body("7770001", &live.phone_number_id, field, value, now()))
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    db.execute(
        "INSERT INTO wa_templates (channel_id, name, language, status, category)
         SELECT id, 'order_update', 'en_US', 'APPROVED', 'UTILITY' FROM wa_channels WHERE name = $1",
        &[&live.name],
    )
    .unwrap();
    // Outbound: one sent (and delivered, read), one failed, and on a paused channel one queued.
    let sent: i64 =
        db.query_one("SELECT wa_send_text($1, $2, 'sent before the dump')", &[&live.name, &ada.wa_id]).unwrap().get(0);
    cluster.graph.fail_next(&format!("+{}", bob.wa_id), Fault::meta(131030));
    let failed: i64 =
        db.query_one("SELECT wa_send_text($1, $2, 'fails before the dump')", &[&live.name, &bob.wa_id]).unwrap().get(0);
    post(&cluster, &held, payloads::message_value("text", "wamid.backup.held.1", &ada, "hello held", now()).unwrap());
    db.execute(
        "UPDATE wa_channels SET paused_at = now(), paused_reason = 'held for the backup test' WHERE name = $1",
        &[&held.name],
    )
    .unwrap();
    // An agent granted one of the two channels (roles are the cluster's: they are not dumped).
    db.batch_execute(
        "CREATE ROLE backup_agent;
         GRANT SELECT ON wa_channels, wa_messages TO backup_agent;",
    )
    .unwrap();
    db.execute("SELECT wa_grant_channel($1, 'backup_agent', 'send')", &[&live.name]).unwrap();
    let queued: i64 = db
        .query_one("SELECT wa_send_text($1, $2, 'queued before the dump')", &[&held.name, &ada.wa_id])
        .unwrap()
        .get(0);
    // An action (a block of a customer the rest of the test leaves alone), done before the dump.
    let block: i64 = db.query_one("SELECT wa_block($1, ARRAY['16505551009'])", &[&live.name]).unwrap().get(0);
    wait_until_quiet(&mut db, sent);
    let blocked = poll(|| {
        let s: String = db.query_one("SELECT status FROM wa_actions WHERE id = $1", &[&block]).unwrap().get(0);
        (s == "done").then_some(())
    });
    assert!(blocked.is_some(), "the block was not done");
    let listing: i64 =
        db.query_one("SELECT wa_list_group_join_requests($1, 'backup-group')", &[&live.name]).unwrap().get(0);
    let listed = poll(|| {
        db.query_opt("SELECT 1 FROM wa_group_join_requests WHERE join_request_id = $1", &[&asker]).unwrap().map(|_| ())
    });
    assert!(listed.is_some(), "the join requests of action {listing} were not listed");
    let status = |db: &mut Client, id: i64| -> String {
        db.query_one("SELECT status FROM wa_messages WHERE id = $1", &[&id]).unwrap().get(0)
    };
    assert_eq!(status(&mut db, failed), "failed");
    assert_eq!(status(&mut db, queued), "queued");

    // No table of the extension is left out of a dump, and none is empty here.
    let missed: Vec<String> = db
        .query(
            "SELECT c.relname::text FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
              WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e' AND c.relkind IN ('r', 'S')
                AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'whatsapp_channel')
                AND c.oid <> ALL ((SELECT extconfig FROM pg_extension WHERE extname = 'whatsapp_channel')::oid[])",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(missed.is_empty(), "not dumped by pg_dump: {missed:?}");
    counts_written(&mut db);
    let before = table_digests(&mut db);
    let empty: Vec<&String> = before.iter().filter(|(_, n, _)| *n == 0).map(|(t, ..)| t).collect();
    assert!(empty.is_empty(), "the test leaves these tables empty: {empty:?}");

    let dir = std::env::temp_dir().join(format!("wa-backup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (plain, custom) = (dir.join("dump.sql"), dir.join("dump.custom"));
    run(Command::new(bin("pg_dump")).args(["-d", &dsn_of(&cluster, "postgres"), "-Fp", "-f"]).arg(&plain));
    run(Command::new(bin("pg_dump")).args(["-d", &dsn_of(&cluster, "postgres"), "-Fc", "-f"]).arg(&custom));
    assert_eq!(table_digests(&mut db), before, "the database changed while it was dumped");
    db.batch_execute("CREATE DATABASE restored_plain").unwrap();
    db.batch_execute("CREATE DATABASE restored").unwrap();
    run(Command::new(bin("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &dsn_of(&cluster, "restored_plain"), "-f"])
        .arg(&plain));
    run(Command::new(bin("pg_restore")).args(["--exit-on-error", "-d", &dsn_of(&cluster, "restored")]).arg(&custom));
    std::fs::remove_dir_all(&dir).unwrap();
    for database in ["restored_plain", "restored"] {
        let mut restored = Client::connect(&dsn_of(&cluster, database), NoTls).unwrap();
        assert_eq!(table_digests(&mut restored), before, "{database} differs from what was dumped");
        // The grant came back with the rows, and the policies with CREATE EXTENSION: the agent
        // sees its channel's messages, and nothing of the other channel.
        let seen = |db: &mut Client| -> (Vec<String>, i64) {
            let row = db
                .query_one(
                    "SELECT array_agg(c.name ORDER BY c.name), (SELECT count(*) FROM wa_messages) FROM wa_channels c",
                    &[],
                )
                .unwrap();
            (row.get(0), row.get(1))
        };
        let live_messages: i64 = restored
            .query_one(
                "SELECT count(*) FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = $1",
                &[&live.name],
            )
            .unwrap()
            .get(0);
        restored.batch_execute("SET ROLE backup_agent").unwrap();
        assert_eq!(seen(&mut restored), (vec![live.name.clone()], live_messages), "{database}: the agent's view");
        restored.batch_execute("RESET ROLE").unwrap();
    }

    // The workers serve the restored database from now on.
    db.batch_execute("ALTER SYSTEM SET whatsapp_channel.database = 'restored'").unwrap();
    cluster.crash_and_restart();
    let listening = poll(|| std::net::TcpStream::connect(&cluster.listener).ok());
    assert!(listening.is_some());
    let mut restored = Client::connect(&dsn_of(&cluster, "restored"), NoTls).unwrap();
    let last_id: i64 = restored.query_one("SELECT max(id) FROM wa_messages", &[]).unwrap().get(0);

    // A webhook is stored in it.
    let answer = poll(|| {
        let value = payloads::message_value("text", "wamid.backup.after", &ada, "after the restore", now()).unwrap();
        live.post_signed_to(&cluster, &payloads::envelope(&live.phone_number_id, value))
            .ok()
            .filter(|a| a.status == 200)
    });
    assert!(answer.is_some(), "the restored channel does not take webhooks:\n{}", cluster.log());
    let stored: i64 =
        restored.query_one("SELECT count(*) FROM wa_messages WHERE wamid = 'wamid.backup.after'", &[]).unwrap().get(0);
    assert_eq!(stored, 1);

    // A new send gets an id after every restored one, and goes out.
    let new_send: i64 = restored
        .query_one("SELECT wa_send_text($1, $2, 'sent after the restore')", &[&live.name, &ada.wa_id])
        .unwrap()
        .get(0);
    assert!(new_send > last_id, "id {new_send} is not after the restored {last_id}");
    // What was queued before the dump is delivered once the channel sends again.
    restored
        .execute("UPDATE wa_channels SET paused_at = NULL, paused_reason = NULL WHERE name = $1", &[&held.name])
        .unwrap();
    for (id, text) in [(new_send, "sent after the restore"), (queued, "queued before the dump")] {
        let sent =
            poll(|| (status(&mut restored, id) != "queued" && status(&mut restored, id) != "sending").then_some(()));
        assert!(sent.is_some(), "message {id} was not sent:\n{}", cluster.log());
        assert_ne!(status(&mut restored, id), "failed");
        std::thread::sleep(Duration::from_millis(200)); // a second request would have come by now
        let requests = cluster.graph.received().iter().filter(|r| r.json()["text"]["body"] == text).count();
        assert_eq!(requests, 1, "{text:?} was requested {requests} times");
    }
}
