//! The listener faces strangers: clients that trickle, smuggle, hold connections open or
//! announce huge bodies must not stop Meta's POSTs, nor take the worker's memory.

use e2e::{Cluster, cluster, poll};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn text(phone_number_id: &str, wamid: &str) -> serde_json::Value {
    e2e::wa_sim::payloads::text_message(phone_number_id, wamid, "15550001111", "Customer", "hi", 1_700_000_000)
}

fn connect(cluster: &Cluster) -> TcpStream {
    let s = TcpStream::connect(&cluster.listener).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(25))).unwrap();
    s
}

/// Everything the listener sends until it closes the connection.
fn read_all(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A signed POST of `payload` to `channel`, as raw bytes with `Connection: close`.
fn raw_signed_post(channel: &e2e::Channel, payload: &serde_json::Value, line_end: &str) -> Vec<u8> {
    let body = serde_json::to_vec(payload).unwrap();
    let signature = e2e::whatsapp_cloud::signature::sign(channel.app_secret.as_bytes(), &body);
    let mut request = format!(
        "POST /webhook/{name} HTTP/1.1{e}Host: x{e}Content-Type: application/json{e}X-Hub-Signature-256: {signature}{e}\
         Content-Length: {len}{e}Connection: close{e}{e}",
        name = channel.name,
        e = line_end,
        len = body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    request
}

fn stored(cluster: &Cluster, wamid: &str) -> bool {
    let n: i64 =
        cluster.connect().query_one("SELECT count(*) FROM wa_messages WHERE wamid = $1", &[&wamid]).unwrap().get(0);
    n == 1
}

#[test]
fn a_trickled_head_is_cut_off_and_does_not_hold_up_others() {
    let ch = cluster().add_channel("trickle");
    let mut s = connect(cluster());
    let started = Instant::now();
    // One byte every 3 s, never the end of the head.
    let cut_off = loop {
        if s.write_all(b"X").is_err() || started.elapsed() > Duration::from_secs(40) {
            break started.elapsed();
        }
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(_) => break started.elapsed(), // an answer (408) or the close
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break started.elapsed(),
        }
        // Meanwhile a signed POST is served at once.
        if started.elapsed() < Duration::from_secs(4) {
            assert_eq!(ch.post_signed(&text(&ch.phone_number_id, "wamid.trickle.1")).status, 200);
        }
    };
    assert!(cut_off < Duration::from_secs(20), "a head trickled 1 byte / 3 s was cut off only after {cut_off:?}");
    assert!(stored(cluster(), "wamid.trickle.1"));
}

#[test]
fn two_different_content_lengths_are_400_and_nothing_after_them_is_served() {
    let ch = cluster().add_channel("smuggle");
    let mut s = connect(cluster());
    let inner = raw_signed_post(&ch, &text(&ch.phone_number_id, "wamid.smuggled.1"), "\r\n");
    let mut request = format!(
        "POST /webhook/{} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: {}\r\n\r\nhello",
        ch.name,
        5 + inner.len()
    )
    .into_bytes();
    request.extend_from_slice(&inner);
    s.write_all(&request).unwrap();
    let all = read_all(&mut s);
    assert!(all.starts_with("HTTP/1.1 400"), "{all}");
    assert_eq!(all.matches("HTTP/1.1 ").count(), 1, "a second request was served: {all}");
    assert!(!stored(cluster(), "wamid.smuggled.1"), "the smuggled POST was stored");
}

#[test]
fn a_head_framed_with_bare_line_feeds_is_read_exactly() {
    let ch = cluster().add_channel("barelf");
    let mut s = connect(cluster());
    s.write_all(&raw_signed_post(&ch, &text(&ch.phone_number_id, "wamid.barelf.1"), "\n")).unwrap();
    let all = read_all(&mut s);
    assert!(all.starts_with("HTTP/1.1 200") && all.ends_with("OK"), "{all}");
    assert_eq!(all.matches("HTTP/1.1 ").count(), 1, "{all}");
    assert!(stored(cluster(), "wamid.barelf.1"));
}

#[test]
fn head_is_answered_without_a_body_on_a_kept_alive_connection() {
    let ch = cluster().add_channel("head");
    let mut s = connect(cluster());
    let request = format!(
        "HEAD /webhook/{0}?hub.mode=subscribe&hub.verify_token={1}&hub.challenge=12345 HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /webhook/{0}?hub.mode=subscribe&hub.verify_token={1}&hub.challenge=67890 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ch.name, ch.verify_token
    );
    s.write_all(request.as_bytes()).unwrap();
    let all = read_all(&mut s);
    // HEAD is not one of Meta's methods: 405, with the headers only; the GET after it is read
    // from where the HEAD ended and answered.
    let (head, get) = all.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{all:?}"));
    assert!(head.starts_with("HTTP/1.1 405"), "{all:?}");
    assert!(get.starts_with("HTTP/1.1 200") && get.ends_with("67890"), "the HEAD answer carried a body: {all:?}");
}

/// A connection to the listener from the loopback address `from` (all of 127/8 is loopback).
fn connect_from(from: [u8; 4], cluster: &Cluster) -> TcpStream {
    let to: std::net::SocketAddr = cluster.listener.parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&std::net::SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

#[test]
fn a_thousand_idle_connections_do_not_stop_a_post() {
    let limit = bounded_http::capacity::raise_open_files_limit();
    assert!(limit.now > 1100, "this test needs more than 1,100 open files, the limit is {}", limit.now);
    let ch = cluster().add_channel("idle");
    // From 16 addresses, 127.0.0.10 to .25, each under the default cap of 64 per address.
    let idle: Vec<TcpStream> = (0..1000).map(|i| connect_from([127, 0, 0, 10 + (i % 16) as u8], cluster())).collect();
    // All accepted and still open: none was told 503.
    let mut probe = [0u8; 1];
    for s in idle.iter().step_by(100) {
        s.set_nonblocking(true).unwrap();
        assert!(matches!((&*s).read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
    }
    let answer = ch.post_signed(&text(&ch.phone_number_id, "wamid.idle.1"));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(stored(cluster(), "wamid.idle.1"));
    drop(idle);
}

/// The listener's own memory (RssAnon, kB): what it allocated, without the shared buffers.
fn listener_rss_kb(cluster: &Cluster) -> u64 {
    let pid = cluster.backend_pid("whatsapp_channel webhook listener");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_body_budget_holds_memory_flat_under_many_large_bodies() {
    // A cluster of its own: spending its budget makes other POSTs wait for 503s. Its clients all
    // come from 127.0.0.1, as from a proxy: no cap per address, so that the budget of all bodies
    // is what is tried (hostile_sources.rs tries the caps per address).
    let cluster = Cluster::private_with(
        "whatsapp_channel.max_connections_per_source = 0\nwhatsapp_channel.max_body_bytes_per_source = 0",
    );
    let ch = cluster.add_channel("budget");
    assert_eq!(ch.post_signed_to(&cluster, &text(&ch.phone_number_id, "wamid.budget.0")).unwrap().status, 200);
    let before = listener_rss_kb(&cluster);
    let announce = |s: &mut TcpStream| {
        let head =
            format!("POST /webhook/{} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", ch.name, (4 << 20) - 1);
        s.write_all(head.as_bytes()).unwrap();
    };
    // 200 connections announce 4 MiB bodies and send 1 KiB of them: nothing is set aside for
    // what was merely announced.
    let mut announced: Vec<TcpStream> = (0..200).map(|_| TcpStream::connect(&cluster.listener).unwrap()).collect();
    for s in &mut announced {
        announce(s);
        s.write_all(&[b'x'; 1024]).unwrap();
    }
    // 40 more send 3 MiB each (120 MiB in all): beyond the 64 MiB budget they are told 503.
    let chunk = vec![b'y'; 3 << 20];
    let senders: Vec<std::thread::JoinHandle<String>> = (0..40)
        .map(|_| {
            let (listener, chunk) = (cluster.listener.clone(), chunk.clone());
            let mut s = TcpStream::connect(&listener).unwrap();
            announce(&mut s);
            std::thread::spawn(move || {
                let _ = s.write_all(&chunk);
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).unwrap_or(0);
                // Held open (until the body deadline) unless answered.
                String::from_utf8_lossy(&buf[..n]).into_owned()
            })
        })
        .collect();
    // While they are held, the listener's memory stays within the budget and some slack.
    std::thread::sleep(Duration::from_secs(2));
    let during = listener_rss_kb(&cluster);
    let grown_mb = during.saturating_sub(before) / 1024;
    assert!(grown_mb < 64 + 40, "the listener grew by {grown_mb} MB under large bodies (budget 64 MB)");
    let answers: Vec<String> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    let refused = answers.iter().filter(|a| a.starts_with("HTTP/1.1 503")).count();
    assert!(refused >= 10, "the budget refused only {refused} of 40 bodies of 3 MiB: {answers:?}");
    drop(announced);
    // Given back: a signed POST is stored.
    let ok = poll(|| {
        let answer = ch.post_signed_to(&cluster, &text(&ch.phone_number_id, "wamid.budget.1")).ok()?;
        (answer.status == 200).then_some(())
    });
    assert!(ok.is_some(), "no POST was accepted after the large bodies went");
}
