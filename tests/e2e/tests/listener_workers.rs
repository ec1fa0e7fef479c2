//! Several webhook listener workers share one address (SO_REUSEPORT), each storing with its own
//! group commit. With `listener_handover` (the default) new connections go to the first while
//! it listens; without, the kernel spreads them over all, and the UNIQUE constraints decide
//! when the same webhook reaches two of them at once.

use e2e::{Cluster, poll};
use postgres::fallible_iterator::FallibleIterator;
use std::collections::HashSet;
use std::net::TcpStream;
use std::time::Duration;

fn text(phone_number_id: &str, wamid: &str) -> serde_json::Value {
    e2e::wa_sim::payloads::text_message(phone_number_id, wamid, "15550003333", "Customer", "hi", 1_700_000_000)
}

fn listener_pids(cluster: &Cluster) -> Vec<i32> {
    let rows = cluster
        .connect()
        .query("SELECT pid FROM pg_stat_activity WHERE backend_type = 'whatsapp_channel webhook listener'", &[])
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// Socket inodes in /proc/net/tcp whose local port is `port`, in state `state` (0A LISTEN,
/// 01 ESTABLISHED, 08 CLOSE_WAIT).
fn sockets(port: u16, state: &str) -> HashSet<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            (local_port == port && f.get(3)? == &state).then(|| f.get(9).map(|s| s.to_string()))?
        })
        .collect()
}

/// How many of `inodes` process `pid` holds open.
fn held_by(pid: i32, inodes: &HashSet<String>) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
        .filter(|inode| inodes.contains(inode))
        .count()
}

/// The established connections to `port` each listener worker holds, once they hold `n`.
fn held_when_all_accepted(cluster: &Cluster, port: u16, n: usize) -> Option<Vec<(i32, usize)>> {
    poll(|| {
        let established = sockets(port, "01");
        let held: Vec<(i32, usize)> =
            listener_pids(cluster).iter().map(|&pid| (pid, held_by(pid, &established))).collect();
        (held.iter().map(|(_, n)| n).sum::<usize>() == n).then_some(held)
    })
}

fn two_workers_listening(cluster: &Cluster) -> u16 {
    let port: u16 = cluster.listener.rsplit(':').next().unwrap().parse().unwrap();
    assert!(poll(|| (listener_pids(cluster).len() == 2).then_some(())).is_some(), "two listener workers did not start");
    assert!(poll(|| (sockets(port, "0A").len() == 2).then_some(())).is_some(), "not two sockets listen on {port}");
    port
}

#[test]
fn handing_over_new_connections_go_to_the_first_worker_and_to_another_while_it_is_gone() {
    let cluster = Cluster::private_with("whatsapp_channel.listener_workers = 2");
    let port = two_workers_listening(&cluster);
    // Spread by hash, 32 connections would all reach one of two workers once in 2^31.
    let open: Vec<TcpStream> = (0..32).map(|_| TcpStream::connect(&cluster.listener).unwrap()).collect();
    let held = held_when_all_accepted(&cluster, port, 32).expect("the 32 connections were not all accepted");
    let first = held.iter().find(|(_, n)| *n == 32).map(|(pid, _)| *pid);
    let Some(first) = first else { panic!("the connections went to more than one worker: {held:?}") };
    drop(open);

    // The first stopped (the postmaster starts it again): new connections go to the other, also
    // once the first listens again (the kernel gave the other its place).
    cluster.connect().execute("SELECT pg_terminate_backend($1)", &[&first]).unwrap();
    assert!(
        poll(|| (!std::path::Path::new(&format!("/proc/{first}")).exists()).then_some(())).is_some(),
        "the first listener worker did not stop"
    );
    let open: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(&cluster.listener).unwrap()).collect();
    let held = held_when_all_accepted(&cluster, port, 8).expect("the 8 connections were not all accepted");
    assert!(held.iter().any(|&(pid, n)| pid != first && n == 8), "not all to the other worker: {held:?}");
    drop(open);
}

#[test]
fn without_handover_two_workers_share_the_address_spread_connections_and_store_a_racing_webhook_once() {
    let cluster =
        Cluster::private_with("whatsapp_channel.listener_workers = 2\nwhatsapp_channel.listener_handover = off");
    let port = two_workers_listening(&cluster);

    // Connections are spread over both workers.
    let open: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(&cluster.listener).unwrap()).collect();
    let held = held_when_all_accepted(&cluster, port, 64).expect("the 64 connections were not all accepted");
    assert!(
        held.len() == 2 && held.iter().all(|&(_, n)| n > 0),
        "the 64 connections were not spread over both workers: {held:?}"
    );
    drop(open);
    // The workers have let go of them (no socket left established or half-closed), so the 32
    // POSTs below are not counted against 127.0.0.1's cap of 64 together with these.
    let released = poll(|| {
        let left: HashSet<String> = sockets(port, "01").union(&sockets(port, "08")).cloned().collect();
        listener_pids(&cluster).iter().all(|&pid| held_by(pid, &left) == 0).then_some(())
    });
    assert!(released.is_some(), "the listener workers kept the 64 closed connections");

    // A channel added a moment ago reaches every worker; the same webhook posted from many
    // connections at once (so to both workers) is one row and one notification.
    let mut db = cluster.connect();
    db.batch_execute("LISTEN wa_message").unwrap();
    let ch = cluster.add_channel("pair");
    let payload = text(&ch.phone_number_id, "wamid.pair.1");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let posts: Vec<_> =
            (0..32).map(|_| s.spawn(|| ch.post_signed_to(&cluster, &payload).map(|a| a.status).unwrap_or(0))).collect();
        posts.into_iter().map(|p| p.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let rows: i64 = db.query_one("SELECT count(*) FROM wa_messages WHERE wamid = 'wamid.pair.1'", &[]).unwrap().get(0);
    assert_eq!(rows, 1);
    let id: i64 = db.query_one("SELECT id FROM wa_messages WHERE wamid = 'wamid.pair.1'", &[]).unwrap().get(0);
    // Every notification was sent at a COMMIT that came before the 200s above; a marker sent
    // now arrives after all of them.
    db.batch_execute("NOTIFY wa_message, 'end'").unwrap();
    let mut notified = 0;
    {
        let mut notifications = db.notifications();
        let mut arrived = notifications.timeout_iter(Duration::from_secs(20));
        while let Ok(Some(n)) = arrived.next() {
            if n.payload() == "end" {
                break;
            }
            let payload: serde_json::Value = serde_json::from_str(n.payload()).unwrap();
            notified += usize::from(payload["id"] == id);
        }
    }
    assert_eq!(notified, 1, "the racing webhook was notified {notified} times");

    // Distinct webhooks over both workers: each stored once.
    std::thread::scope(|s| {
        for t in 0..16 {
            let (ch, cluster) = (&ch, &cluster);
            s.spawn(move || {
                for i in 0..20 {
                    let answer = ch.post_signed_to(cluster, &text(&ch.phone_number_id, &format!("wamid.pair.{t}.{i}")));
                    assert_eq!(answer.map(|a| a.status), Ok(200));
                }
            });
        }
    });
    let stored: i64 = db
        .query_one("SELECT count(DISTINCT wamid) FROM wa_messages WHERE wamid LIKE 'wamid.pair._%._%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, 320);
}

#[test]
fn workers_refuse_an_address_another_server_holds() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cluster = Cluster::private_with(&format!(
        "whatsapp_channel.listener_workers = 2\nwhatsapp_channel.listen_address = '{}'",
        taken.local_addr().unwrap()
    ));
    cluster.wait_for_log("cannot listen on");
    let port = taken.local_addr().unwrap().port();
    assert_eq!(sockets(port, "0A").len(), 1, "a listener worker shares the port of another server");
}

/// `listener_workers = 0` (the default): one worker per two cores, but two on a machine of 2
/// or 3 cores (a large batch is bound by one backend; see auto_listener_workers in
/// src/pg/guc.rs), and one on a single core.
#[test]
fn the_default_runs_one_worker_per_two_cores_and_two_on_a_small_machine() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let expected = if cores < 2 { 1 } else { (cores / 2).clamp(2, 16) };
    let cluster = Cluster::private_with("whatsapp_channel.listener_workers = 0");
    let running = poll(|| {
        let n = listener_pids(&cluster).len();
        (n == expected).then_some(n)
    });
    assert_eq!(
        running,
        Some(expected),
        "{cores} cores: expected {expected} listener workers, saw {:?}",
        listener_pids(&cluster)
    );
}
