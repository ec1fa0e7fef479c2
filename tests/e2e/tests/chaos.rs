//! Chaos: what a year of running brings, each on a cluster of its own, under load, with a
//! client that retries every POST until it gets 200 (as Meta does). Each test states what it
//! proves. (A delivery worker killed mid-batch, and the postmaster killed while sending, are
//! in exactly_once.rs; the postmaster killed while receiving, in crash.rs.)

use e2e::wa_sim::payloads;
use e2e::{Channel, Cluster, poll_within, unsent};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Posts `total` messages from several threads, each retried until answered 200 (within two
/// minutes), counting the answers that were not 200, while `meanwhile` runs.
fn post_through(
    cluster: &Cluster,
    ch: &Channel,
    total: usize,
    text: &str,
    meanwhile: impl FnOnce(&AtomicUsize, &AtomicUsize) + Send,
) {
    let next = AtomicUsize::new(0);
    let acked = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let wamid = format!("wamid.chaos.{}.{i}", ch.name);
                    let payload = payloads::text_message(
                        &ch.phone_number_id,
                        &wamid,
                        "16505559101",
                        "Chaos",
                        text,
                        1_767_000_000,
                    );
                    loop {
                        assert!(Instant::now() < deadline, "message {i} never got a 200:\n{}", cluster.log());
                        match ch.post_signed_to(cluster, &payload) {
                            Ok(a) if a.status == 200 => break,
                            _ => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    }
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        s.spawn(|| {
            meanwhile(&acked, &refused);
            done.store(true, Ordering::Release);
        });
    });
    assert!(done.load(Ordering::Acquire));
    assert_eq!(acked.load(Ordering::Relaxed), total);
}

/// Every message of `ch` is stored exactly once.
fn assert_stored_once(cluster: &Cluster, ch: &Channel, total: usize) {
    let mut db = cluster.connect_when_up();
    let wamids: Vec<String> = db
        .query(
            "SELECT m.wamid FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id WHERE c.name = $1 AND m.direction = 'inbound'",
            &[&ch.name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let unique: BTreeSet<&String> = wamids.iter().collect();
    assert_eq!(unique.len(), wamids.len(), "a message was stored twice");
    assert_eq!(wamids.len(), total, "every acknowledged message is stored");
}

/// A tmpfs of `size` mounted at `path` for the test's lifetime (lazily unmounted at the end).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        assert!(
            Command::new("id").arg("-u").output().unwrap().stdout.starts_with(b"0\n"),
            "mounting a small filesystem needs root (CI and scripts/test.sh run as root)"
        );
        std::fs::create_dir_all(path).unwrap();
        let ok = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
        ok(Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")]).arg("tmpfs").arg(path));
        ok(Command::new("chown").arg("postgres:").arg(path));
        SmallDisk(path.to_path_buf())
    }

    fn grow(&self, size: &str) {
        let status = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Proves: when the disk that holds the messages fills up under load, webhooks are answered
/// 5xx (not 200), nothing acknowledged is lost, and once space returns every POST Meta retries
/// is stored, each message once.
#[test]
fn a_full_disk_answers_5xx_loses_nothing_and_recovers_when_space_returns() {
    let cluster = Cluster::private(Duration::ZERO);
    let ch = cluster.add_channel("disk-full");
    let disk = SmallDisk::mount(&cluster.data_dir().parent().unwrap().join("small_disk"), "2m");
    let mut db = cluster.connect();
    db.batch_execute(&format!("CREATE TABLESPACE small_disk LOCATION '{}'", disk.0.display())).unwrap();
    db.batch_execute("ALTER TABLE wa_messages SET TABLESPACE small_disk").unwrap();
    let text = "x".repeat(1500);
    post_through(&cluster, &ch, 3000, &text, |acked, refused| {
        let full = poll_within(Duration::from_secs(60), || (refused.load(Ordering::Relaxed) >= 20).then_some(()));
        assert!(full.is_some(), "the disk never filled: {} acked", acked.load(Ordering::Relaxed));
        disk.grow("64m");
    });
    assert_stored_once(&cluster, &ch, 3000);
    assert!(cluster.log().contains("No space left on device"), "the failures were the full disk");
}

/// Proves: cancelling the listener's backend again and again while it stores (the
/// `pg_cancel_backend` an operator or a statement timeout sends) costs only retries: nothing
/// acknowledged is lost and nothing is stored twice.
#[test]
fn cancelling_the_listeners_statements_loses_nothing() {
    let cluster = Cluster::private(Duration::ZERO);
    let ch = cluster.add_channel("cancel");
    // Every store takes at least 1 ms (a statement trigger that sleeps), so that some of the
    // cancels sent every 3 ms land inside stores: with stores of a few hundred µs a whole run's
    // cancels once fell between transactions, where the listener ignores them (CI, 7
    // December). (Not longer: with every store hit, nothing would ever be stored.)
    cluster
        .connect()
        .batch_execute(
            "CREATE FUNCTION chaos_slow_store() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.001); RETURN NULL; END $$;
             CREATE TRIGGER chaos_slow_store AFTER INSERT ON wa_messages FOR EACH STATEMENT EXECUTE FUNCTION chaos_slow_store();",
        )
        .unwrap();
    let pid = cluster.backend_pid("whatsapp_channel webhook listener");
    post_through(&cluster, &ch, 1500, "cancelled?", |acked, refused| {
        let mut db = cluster.connect();
        while acked.load(Ordering::Relaxed) < 1500 {
            db.execute("SELECT pg_cancel_backend($1)", &[&pid]).unwrap();
            std::thread::sleep(Duration::from_millis(3));
        }
        assert!(refused.load(Ordering::Relaxed) > 0, "no cancel hit a store: the test proves nothing");
    });
    assert_stored_once(&cluster, &ch, 1500);
    let log = cluster.log();
    assert_eq!(
        cluster.backend_pid("whatsapp_channel webhook listener"),
        pid,
        "the listener went on, not restarted:\n{log}"
    );
}

/// Proves (time-compressed: 3 s answers for a few seconds stand for 10 s answers for minutes):
/// a Graph API that answers slowly holds up neither the webhooks, which are stored at their
/// usual pace, nor the sends, each of which goes out once.
#[test]
fn a_slow_graph_api_holds_up_neither_webhooks_nor_other_sends() {
    let cluster = Cluster::private(Duration::from_secs(3));
    let ch = cluster.add_channel("slow");
    let mut db = cluster.connect();
    db.execute(
        "UPDATE wa_channels SET allow_outside_window = true, max_messages_per_second = 1000 WHERE name = $1",
        &[&ch.name],
    )
    .unwrap();
    let ids: Vec<i64> = db
        .query(
            "SELECT wa_send_text($1, '+1555777' || lpad(i::text, 4, '0'), 'slow ' || i) FROM generate_series(1, 100) i",
            &[&ch.name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // While the sends wait on the Graph API, webhooks are answered as fast as ever.
    post_through(&cluster, &ch, 200, "while Meta is slow", |_, _| {});
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let payload = payloads::text_message(
            &ch.phone_number_id,
            &format!("wamid.timed.{i}"),
            "16505559102",
            "T",
            "timed",
            1_767_000_000,
        );
        let started = Instant::now();
        assert_eq!(ch.post_signed_to(&cluster, &payload).unwrap().status, 200);
        slowest = slowest.max(started.elapsed());
    }
    let in_flight: i64 = db
        .query_one("SELECT count(*) FROM wa_messages WHERE id = ANY($1) AND status = 'sending'", &[&ids])
        .unwrap()
        .get(0);
    assert!(in_flight > 0, "the webhooks were timed while sends were waiting on the Graph API");
    assert!(slowest < Duration::from_secs(1), "a webhook took {slowest:?} while the Graph API was slow");
    let sent = poll_within(Duration::from_secs(60), || (unsent(&mut db, &ids) == 0).then_some(()));
    assert!(sent.is_some(), "the slow sends did not all go out:\n{}", cluster.log());
    let requests = cluster.graph.received().iter().filter(|r| r.path.contains(&ch.phone_number_id)).count();
    assert_eq!(requests, ids.len(), "each send once, none timed out and repeated");
}
