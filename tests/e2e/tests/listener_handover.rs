//! With two listener workers, new connections go to the first; it hands large POSTs to the
//! second, and a worker that has connections all the same hands small POSTs to the first, each
//! to be stored in the taker's batches (src/inbound/handover.rs), over an abstract Unix socket
//! named after the listen address. What the taker answers is what the client gets; what it
//! goes away with is answered 503 and stored once when Meta sends it again; anyone else on
//! that socket is refused.

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

/// The socket small POSTs are gathered on, taken by the first worker.
fn socket_name(listen_address: &str) -> SocketAddr {
    SocketAddr::from_abstract_name(format!("whatsapp_channel-handover-{listen_address}").as_bytes()).unwrap()
}

/// The socket large POSTs are spread on, taken by the second worker.
fn large_socket_name(listen_address: &str) -> SocketAddr {
    SocketAddr::from_abstract_name(format!("whatsapp_channel-handover-large-{listen_address}").as_bytes()).unwrap()
}

fn text(phone_number_id: &str, wamid: &str) -> serde_json::Value {
    payloads::text_message(phone_number_id, wamid, "15550004444", "X", "hi", 1_700_000_000)
}

/// A webhook payload of one message: its channel's phone number id and its wamid.
type Payload = fn(&str, &str) -> serde_json::Value;

/// A message of 8 kB: over the 4 kB up to which POSTs are gathered, so it is spread.
fn long_text(phone_number_id: &str, wamid: &str) -> serde_json::Value {
    payloads::text_message(phone_number_id, wamid, "15550004444", "X", &"x".repeat(8_000), 1_700_000_000)
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

/// A connection to a taker's socket, as a sibling worker makes it.
struct AsSibling {
    stream: UnixStream,
    replies: BufReader<UnixStream>,
}

impl AsSibling {
    fn connect(name: &SocketAddr) -> AsSibling {
        let stream = poll(|| UnixStream::connect_addr(name).ok()).expect("no worker takes handovers there");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        AsSibling { replies: BufReader::new(stream.try_clone().unwrap()), stream }
    }

    /// Sends `offer` and reads the next reply.
    fn offer(&mut self, offer: &Offer) -> Reply {
        std::io::Write::write_all(&mut &self.stream, &handover::encode_offer(offer)).unwrap();
        handover::read_reply(&mut self.replies).unwrap()
    }
}

#[test]
fn the_first_worker_stores_signed_posts_handed_over_and_refuses_forged_ones() {
    let cluster = Cluster::private_with("whatsapp_channel.listener_workers = 2");
    let channel = cluster.add_channel("handover");

    // The first worker's socket for small POSTs and the second's for large ones, alike.
    let takers: [(SocketAddr, Payload, &str); 2] =
        [(socket_name(&cluster.listener), text, "small"), (large_socket_name(&cluster.listener), long_text, "large")];
    for (name, payload, size) in takers {
        let mut taker = AsSibling::connect(&name);
        let (forged_id, signed_id) = (format!("wamid.handover.{size}.forged"), format!("wamid.handover.{size}.signed"));

        // Not signed with the channel's secret: refused, nothing stored.
        let forged = payload(&channel.phone_number_id, &forged_id);
        let reply = taker.offer(&offer(1, &channel.name, &forged, b"not the channel's secret"));
        assert!(matches!(reply, Reply { seq: 1, outcome: Outcome::Refused(_) }), "{size}: {reply:?}");

        // For a channel the taker does not know: declined (the sender stores it itself).
        let reply = taker.offer(&offer(2, "no-such-channel", &forged, channel.app_secret.as_bytes()));
        assert_eq!(reply, Reply { seq: 2, outcome: Outcome::Declined }, "{size}");

        // Signed: stored, and answered after its commit.
        let signed = payload(&channel.phone_number_id, &signed_id);
        let reply = taker.offer(&offer(3, &channel.name, &signed, channel.app_secret.as_bytes()));
        assert_eq!(reply, Reply { seq: 3, outcome: Outcome::Committed }, "{size}");
        let rows = stored(&cluster, &format!("wamid.handover.{size}.%"));
        assert_eq!(rows.get(&signed_id), Some(&1), "stored once, before the answer: {rows:?}");
        assert_eq!(rows.get(&forged_id), None, "the forged one is stored nowhere");
    }
    let signed = text(&channel.phone_number_id, "wamid.handover.small.signed");

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

/// POSTs sent on 48 connections (by hash, the kernel would spread them over both workers).
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

/// 16 POSTs of 8 kB at once.
fn post_long_ones(cluster: &Cluster, channel: &e2e::Channel, prefix: &str) {
    std::thread::scope(|s| {
        for i in 0..16 {
            s.spawn(move || {
                let payload = long_text(&channel.phone_number_id, &format!("{prefix}{i}"));
                assert_eq!(channel.post_signed_to(cluster, &payload).map(|a| a.status), Ok(200), "long POST {i}");
            });
        }
    });
}

#[test]
fn small_posts_reach_the_first_worker_and_large_ones_are_spread_to_the_second_unless_turned_off() {
    let cluster = Cluster::private_with("whatsapp_channel.listener_workers = 2");
    let channel = cluster.add_channel("handed");
    poll(|| UnixStream::connect_addr(&large_socket_name(&cluster.listener)).ok()).expect("the second worker is up");
    post_each_on_its_own_connection(&cluster, &channel, "wamid.handed.", 48);
    let rows = stored(&cluster, "wamid.handed.%");
    assert!(rows.len() == 48 && rows.values().all(|&n| n == 1), "each stored once: {rows:?}");
    // A connection the second worker had would have had its POST gathered by the first (or
    // kept); spread by hash, 48 connections all reach one of two workers once in 2^47.
    assert_eq!(handovers(&cluster, "taken") + handovers(&cluster, "kept"), 0.0, "a connection reached the second");

    // Bodies over 4 kB (about ten messages) go to the second, two at a time.
    post_long_ones(&cluster, &channel, "wamid.handed.long.");
    let rows = stored(&cluster, "wamid.handed.long.%");
    assert!(rows.len() == 16 && rows.values().all(|&n| n == 1), "each stored once: {rows:?}");
    assert!(handovers(&cluster, "taken") > 0.0, "no 8 kB POST was stored by the second worker");
    assert!(handovers(&cluster, "kept") > 0.0, "16 at once, yet the first stored none of them itself");
    assert_eq!(handovers(&cluster, "lost"), 0.0);

    let off = Cluster::private_with("whatsapp_channel.listener_workers = 2\nwhatsapp_channel.listener_handover = off");
    let channel = off.add_channel("kept");
    post_each_on_its_own_connection(&off, &channel, "wamid.kept.", 48);
    post_long_ones(&off, &channel, "wamid.kept.long.");
    let rows = stored(&off, "wamid.kept.%");
    assert!(rows.len() == 64 && rows.values().all(|&n| n == 1), "each stored once: {rows:?}");
    assert_eq!(handovers(&off, "taken") + handovers(&off, "kept"), 0.0, "listener_handover = off offers nothing");
    assert!(UnixStream::connect_addr(&socket_name(&off.listener)).is_err(), "nothing takes handovers when off");
    assert!(UnixStream::connect_addr(&large_socket_name(&off.listener)).is_err(), "nor large ones");
}

/// Here the test holds the large POSTs' socket name before the cluster starts, so the first
/// worker hands them to the test: it takes one, then closes the connection without a reply, as
/// a second worker that died would; then it declines all.
#[test]
fn a_post_the_taker_goes_away_with_is_answered_503_and_stored_once_when_sent_again() {
    let address = format!("127.0.0.1:{}", free_port());
    let squatter = UnixListener::bind_addr(&large_socket_name(&address)).unwrap();
    let cluster = Cluster::private_with(&format!(
        "whatsapp_channel.listener_workers = 2\nwhatsapp_channel.listen_address = '{address}'"
    ));
    cluster.wait_for_log("cannot take large POSTs on the handover socket");
    let channel = cluster.add_channel("lost");
    let url = format!("http://{address}/webhook/{}", channel.name);
    assert!(poll(|| std::net::TcpStream::connect(&address).ok()).is_some(), "the listener never bound {address}");

    // The test's second worker, on a thread of its own: it blocks on the first worker's
    // connection until the process ends.
    let offered = Arc::new(AtomicUsize::new(0));
    let counted = offered.clone();
    std::thread::spawn(move || {
        // The first connection: one offer read, then gone with it.
        let (conn, _) = squatter.accept().unwrap();
        handover::read_offer(&mut BufReader::new(&conn), 1 << 20).unwrap();
        counted.fetch_add(1, Ordering::SeqCst);
        drop(conn);
        // The next: every offer declined, so the first worker stores them itself.
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
        let body = serde_json::to_vec(&long_text(&channel.phone_number_id, &format!("wamid.lost.{i}"))).unwrap();
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
    assert!(offered.load(Ordering::SeqCst) >= 2, "the first worker offered too little: {statuses:?}");
    assert!(statuses.contains(&Ok(503)), "the POST the taker went away with was not answered 503: {statuses:?}");
    assert!(statuses.iter().all(|s| matches!(s, Ok(200 | 503))), "{statuses:?}");
    let rows = stored(&cluster, "wamid.lost.%");
    assert!(rows.len() == 48 && rows.values().all(|&n| n == 1), "each stored once: {rows:?}");
    assert_eq!(handovers(&cluster, "lost"), 1.0, "the one POST the taker went away with");
    assert!(handovers(&cluster, "kept") >= 1.0, "declined POSTs are stored by the worker that received them");
    assert_eq!(handovers(&cluster, "taken"), 0.0, "the test's taker answered none");
}
