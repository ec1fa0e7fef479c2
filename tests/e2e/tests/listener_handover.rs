//! With two listener workers, the second hands small POSTs to the first, to be stored in its
//! batches (src/inbound/handover.rs), over an abstract Unix socket named after the listen
//! address. What the first answers is what the client gets; what it goes away with is
//! answered 503 and stored once when Meta sends it again; anyone else on that socket is
//! refused.

use bounded_http::handover::{self, Offer, Outcome, Reply};
use e2e::wa_sim::payloads;
use e2e::{Cluster, free_port, poll, try_http_post};
use std::collections::BTreeMap;
use std::io::BufReader;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn socket_name(listen_address: &str) -> SocketAddr {
    SocketAddr::from_abstract_name(format!("whatsapp_channel-handover-{listen_address}").as_bytes()).unwrap()
}

fn text(phone_number_id: &str, wamid: &str) -> serde_json::Value {
    payloads::text_message(phone_number_id, wamid, "15550004444", "X", "hi", 1_700_000_000)
}

/// The offer of `payload` as the second worker would make it, signed with `secret`.
fn offer(seq: u64, channel: &str, payload: &serde_json::Value, secret: &[u8]) -> Offer {
    let body = serde_json::to_vec(payload).unwrap();
    let signature = e2e::whatsapp_cloud::signature::sign(secret, &body);
    let headers = serde_json::json!({ "x-hub-signature-256": signature }).to_string().into_bytes();
    Offer { seq, channel: channel.to_string(), body, headers }
}

/// `whatsapp_channel_listener_handover_total{result}`, as wa_metrics shows it.
fn handovers(cluster: &Cluster, result: &str) -> f64 {
    cluster
        .connect()
        .query_one(
            "SELECT coalesce(sum(value), 0)::float8 FROM wa_metrics
              WHERE metric = 'whatsapp_channel_listener_handover_total' AND labels->>'result' = $1",
            &[&result],
        )
        .unwrap()
        .get(0)
}

fn stored(cluster: &Cluster, like: &str) -> BTreeMap<String, i64> {
    let rows = cluster
        .connect()
        .query("SELECT wamid, count(*) FROM wa_messages WHERE wamid LIKE $1 GROUP BY wamid", &[&like])
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[test]
fn the_first_worker_stores_signed_posts_handed_over_and_refuses_forged_ones() {
    let cluster = Cluster::private_with("whatsapp_channel.listener_workers = 2");
    let channel = cluster.add_channel("handover");
    let name = socket_name(&cluster.listener);
    let stream = poll(|| UnixStream::connect_addr(&name).ok()).expect("the first worker takes handovers");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut replies = BufReader::new(stream.try_clone().unwrap());
    let send = |o: &Offer| std::io::Write::write_all(&mut &stream, &handover::encode_offer(o)).unwrap();

    // Not signed with the channel's secret: refused, nothing stored.
    let forged = text(&channel.phone_number_id, "wamid.handover.forged");
    send(&offer(1, &channel.name, &forged, b"not the channel's secret"));
    let reply = handover::read_reply(&mut replies).unwrap();
    assert!(matches!(reply, Reply { seq: 1, outcome: Outcome::Refused(_) }), "{reply:?}");

    // For a channel the first does not know: declined (the sender stores it itself).
    send(&offer(2, "no-such-channel", &forged, channel.app_secret.as_bytes()));
    assert_eq!(handover::read_reply(&mut replies).unwrap(), Reply { seq: 2, outcome: Outcome::Declined });

    // Signed: stored, and answered after its commit.
    let signed = text(&channel.phone_number_id, "wamid.handover.signed");
    send(&offer(3, &channel.name, &signed, channel.app_secret.as_bytes()));
    assert_eq!(handover::read_reply(&mut replies).unwrap(), Reply { seq: 3, outcome: Outcome::Committed });
    let rows = stored(&cluster, "wamid.handover.%");
    assert_eq!(rows.get("wamid.handover.signed"), Some(&1), "stored once, before the answer: {rows:?}");
    assert_eq!(rows.get("wamid.handover.forged"), None, "the forged one is stored nowhere");

    // A process of another user is not served at all (as root, the tests' user, it can be tried:
    // the server runs as postgres, and `nobody` is neither).
    if e2e::is_root() {
        let frame = handover::encode_offer(&offer(4, &channel.name, &signed, channel.app_secret.as_bytes()));
        let script = format!(
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect('\\0whatsapp_channel-handover-{}')\n\
             s.settimeout(20)\ntry:\n  s.sendall(bytes.fromhex('{}'))\n  d=s.recv(64)\n  \
             sys.stdout.write('reply' if d else 'closed')\nexcept (BrokenPipeError, ConnectionResetError):\n  \
             sys.stdout.write('closed')\n",
            cluster.listener,
            frame.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let out = std::process::Command::new("runuser").args(["-u", "nobody", "--", "python3", "-c", &script]).output();
        let out = out.expect("runuser and python3 are there");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "closed",
            "another user's connection is closed without a reply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_for_log("refused a connection to the handover socket from a process of another user");
    }
}

/// POSTs sent on 48 connections, which the kernel spreads over both workers.
fn post_each_on_its_own_connection(cluster: &Cluster, channel: &e2e::Channel, prefix: &str, n: usize) {
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                for i in (t..n).step_by(4) {
                    let answer =
                        channel.post_signed_to(cluster, &text(&channel.phone_number_id, &format!("{prefix}{i}")));
                    assert_eq!(answer.map(|a| a.status), Ok(200), "POST {i}");
                }
            });
        }
    });
}

#[test]
fn posts_to_the_second_worker_are_stored_in_the_first_workers_batches_unless_turned_off() {
    let cluster = Cluster::private_with("whatsapp_channel.listener_workers = 2");
    let channel = cluster.add_channel("handed");
    post_each_on_its_own_connection(&cluster, &channel, "wamid.handed.", 48);
    let rows = stored(&cluster, "wamid.handed.%");
    assert!(rows.len() == 48 && rows.values().all(|&n| n == 1), "each stored once: {rows:?}");
    assert!(handovers(&cluster, "taken") > 0.0, "none of 48 connections' POSTs went through the first worker");
    assert_eq!(handovers(&cluster, "lost"), 0.0);

    // Bodies over 4 kB (about ten messages) are stored where they arrive (16 connections: some
    // reach the second).
    let kept = handovers(&cluster, "kept");
    let long = "x".repeat(8_000);
    std::thread::scope(|s| {
        for i in 0..16 {
            let (cluster, channel, long) = (&cluster, &channel, &long);
            s.spawn(move || {
                let payload = payloads::text_message(
                    &channel.phone_number_id,
                    &format!("wamid.handed.long.{i}"),
                    "15550004444",
                    "X",
                    long,
                    1_700_000_000,
                );
                assert_eq!(channel.post_signed_to(cluster, &payload).map(|a| a.status), Ok(200), "long POST {i}");
            });
        }
    });
    assert_eq!(stored(&cluster, "wamid.handed.long.%").len(), 16);
    assert!(handovers(&cluster, "kept") > kept, "every 8 kB POST was handed over");

    let off = Cluster::private_with("whatsapp_channel.listener_workers = 2\nwhatsapp_channel.listener_handover = off");
    let channel = off.add_channel("kept");
    post_each_on_its_own_connection(&off, &channel, "wamid.kept.", 48);
    let rows = stored(&off, "wamid.kept.%");
    assert!(rows.len() == 48 && rows.values().all(|&n| n == 1), "each stored once: {rows:?}");
    assert_eq!(handovers(&off, "taken") + handovers(&off, "kept"), 0.0, "listener_handover = off offers nothing");
    assert!(UnixStream::connect_addr(&socket_name(&off.listener)).is_err(), "nothing takes handovers when off");
}

/// Here the test holds the socket's name before the cluster starts, so the second worker hands
/// its POSTs to the test: it takes one, then closes the connection without a reply, as a first
/// worker that died would; then it declines all.
#[test]
fn a_post_the_first_worker_goes_away_with_is_answered_503_and_stored_once_when_sent_again() {
    let address = format!("127.0.0.1:{}", free_port());
    let squatter = UnixListener::bind_addr(&socket_name(&address)).unwrap();
    let cluster = Cluster::private_with(&format!(
        "whatsapp_channel.listener_workers = 2\nwhatsapp_channel.listen_address = '{address}'"
    ));
    cluster.wait_for_log("cannot take them on the handover socket");
    let channel = cluster.add_channel("lost");
    let url = format!("http://{address}/webhook/{}", channel.name);
    assert!(poll(|| std::net::TcpStream::connect(&address).ok()).is_some(), "the listener never bound {address}");

    // The test's first worker, on a thread of its own: it blocks on the second worker's
    // connection until the process ends.
    let offered = Arc::new(AtomicUsize::new(0));
    let counted = offered.clone();
    std::thread::spawn(move || {
        // The first connection: one offer read, then gone with it.
        let (conn, _) = squatter.accept().unwrap();
        handover::read_offer(&mut BufReader::new(&conn), 1 << 20).unwrap();
        counted.fetch_add(1, Ordering::SeqCst);
        drop(conn);
        // The next: every offer declined, so the second worker stores them itself.
        let (conn, _) = squatter.accept().unwrap();
        let mut input = BufReader::new(&conn);
        while let Ok(o) = handover::read_offer(&mut input, 1 << 20) {
            counted.fetch_add(1, Ordering::SeqCst);
            if handover::write_reply(&mut &conn, &Reply { seq: o.seq, outcome: Outcome::Declined }).is_err() {
                break;
            }
        }
    });
    // Each message retried until answered 200, as Meta does, each try on a connection of its own.
    let mut statuses = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..48 {
        let body = serde_json::to_vec(&text(&channel.phone_number_id, &format!("wamid.lost.{i}"))).unwrap();
        let signature = e2e::whatsapp_cloud::signature::sign(channel.app_secret.as_bytes(), &body);
        loop {
            assert!(Instant::now() < deadline, "message {i} never got a 200: {statuses:?}");
            let status = try_http_post(&url, &body, Some(&signature)).map(|a| a.status);
            statuses.push(status.clone());
            if status == Ok(200) {
                break;
            }
        }
    }
    assert!(offered.load(Ordering::SeqCst) >= 2, "the second worker offered too little: {statuses:?}");
    assert!(statuses.contains(&Ok(503)), "the POST the first went away with was not answered 503: {statuses:?}");
    assert!(statuses.iter().all(|s| matches!(s, Ok(200 | 503))), "{statuses:?}");
    let rows = stored(&cluster, "wamid.lost.%");
    assert!(rows.len() == 48 && rows.values().all(|&n| n == 1), "each stored once: {rows:?}");
    assert_eq!(handovers(&cluster, "lost"), 1.0, "the one POST the first went away with");
    assert!(handovers(&cluster, "kept") >= 1.0, "declined POSTs are stored by the worker that received them");
    assert_eq!(handovers(&cluster, "taken"), 0.0, "the test's first worker answered none");
}
