//! One hostile client address must not keep the others out: its connections (idle TLS
//! handshakes included) and its bodies' bytes in flight are capped per address, and an
//! allow-list keeps strangers out altogether. The hostile client connects from 127.0.0.2 (all of
//! 127/8 is loopback), the others, Meta's stand-in included, from 127.0.0.1.

use e2e::{Channel, Cluster, free_port, http_get, poll};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const HOSTILE: [u8; 4] = [127, 0, 0, 2];

/// A body this large is announced by each trickling connection (Meta's largest).
const ANNOUNCED: usize = 3 << 20;

/// A connection to the listener from the loopback address `from`.
fn connect_from(from: [u8; 4], cluster: &Cluster) -> TcpStream {
    let to: SocketAddr = cluster.listener.parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// Everything the listener sends until it closes the connection (or 10 s pass).
fn read_all(s: &mut impl Read) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn text(channel: &Channel, wamid: &str, body: &str) -> serde_json::Value {
    e2e::wa_sim::payloads::text_message(&channel.phone_number_id, wamid, "15550003333", "Customer", body, 1_700_000_000)
}

/// A signed POST as raw bytes, with `Connection: close`.
fn raw_signed_post(channel: &Channel, payload: &serde_json::Value) -> Vec<u8> {
    let body = serde_json::to_vec(payload).unwrap();
    let signature = e2e::whatsapp_cloud::signature::sign(channel.app_secret.as_bytes(), &body);
    let mut request = format!(
        "POST /webhook/{} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Hub-Signature-256: {signature}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        channel.name,
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    request
}

/// The head of a POST announcing an [`ANNOUNCED`]-byte body, which never comes.
fn announcing_head(channel: &Channel) -> String {
    format!("POST /webhook/{} HTTP/1.1\r\nHost: x\r\nContent-Length: {ANNOUNCED}\r\n\r\n", channel.name)
}

fn stored(cluster: &Cluster, wamid: &str) -> bool {
    let n: i64 =
        cluster.connect().query_one("SELECT count(*) FROM wa_messages WHERE wamid = $1", &[&wamid]).unwrap().get(0);
    n == 1
}

/// A cluster with these settings and `/metrics` on; and the metrics' URL.
fn cluster_with(conf: &str) -> (Cluster, String) {
    let address = format!("127.0.0.1:{}", free_port());
    let cluster = Cluster::private_with(&format!("{conf}\nwhatsapp_channel.metrics_address = '{address}'"));
    (cluster, format!("http://{address}/metrics"))
}

/// Waits until `/metrics` counts at least one refusal for `reason`.
fn wait_for_refusal(metrics: &str, reason: &str) {
    let line = format!("whatsapp_channel_webhook_refused_total{{reason=\"{reason}\"}} ");
    let counted = poll(|| {
        let text = e2e::try_http_get(metrics).ok()?.body;
        let n: f64 = text.lines().find_map(|l| l.strip_prefix(&line))?.parse().ok()?;
        (n >= 1.0).then_some(())
    });
    assert!(counted.is_some(), "/metrics never counted a {reason} refusal:\n{}", http_get(metrics).body);
}

/// Writes one byte every 200 ms to each of `streams` until the flag is set (what a client
/// trickling its bodies does); write errors (a connection the listener closed) are ignored.
fn trickle<W: Write + Send + 'static>(mut streams: Vec<W>) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            for s in &mut streams {
                let _ = s.write_all(b"x").and_then(|()| s.flush());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    (stop, thread)
}

/// A self-signed certificate for 127.0.0.1: (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

/// A rustls client configuration trusting only `pem`.
fn trusting(pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A signed text POST over https from 127.0.0.1: its status, or the error.
fn post_https(cluster: &Cluster, channel: &Channel, trusted_pem: &str, wamid: &str) -> Result<u16, String> {
    let body = serde_json::to_vec(&text(channel, wamid, "hi")).unwrap();
    let signature = e2e::whatsapp_cloud::signature::sign(channel.app_secret.as_bytes(), &body);
    let tls = e2e::wa_sim::load::tls_trusting(Some(trusted_pem.as_bytes()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .tls_config(tls)
        .build()
        .into();
    agent
        .post(&format!("https://{}/webhook/{}", cluster.listener, channel.name))
        .content_type("application/json")
        .header("X-Hub-Signature-256", &signature)
        .send(&body[..])
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

fn alter_system(cluster: &Cluster, setting: &str, value: &str) {
    let mut db = cluster.connect();
    // One statement each: ALTER SYSTEM refuses to run in the implicit transaction of a batch.
    db.execute(&format!("ALTER SYSTEM SET {setting} = '{value}'"), &[]).unwrap();
    db.execute("SELECT pg_reload_conf()", &[]).unwrap();
}

#[test]
fn a_source_holding_idle_handshakes_and_trickled_bodies_does_not_keep_meta_out() {
    let (cluster, metrics) =
        cluster_with("whatsapp_channel.max_connections = 16\nwhatsapp_channel.max_connections_per_source = 8");
    let ch = cluster.add_channel("sources");
    let (cert, key) = self_signed();
    let cert_file = cluster.write_file("webhook.crt", cert.as_bytes(), 0o644);
    let key_file = cluster.write_file("webhook.key", key.as_bytes(), 0o600);
    alter_system(&cluster, "whatsapp_channel.tls_cert_file", cert_file.to_str().unwrap());
    alter_system(&cluster, "whatsapp_channel.tls_key_file", key_file.to_str().unwrap());
    let https = poll(|| post_https(&cluster, &ch, &cert, "wamid.sources.0").ok().filter(|&s| s == 200));
    assert_eq!(https, Some(200), "https never came up:\n{}", cluster.log());

    // 127.0.0.2 holds 4 connections that never start their TLS handshake ...
    let idle: Vec<TcpStream> = (0..4).map(|_| connect_from(HOSTILE, &cluster)).collect();
    // ... and 4 that finish it (so they and the idle ones before them were accepted), announce
    // 3 MB bodies and trickle them a byte every 200 ms.
    let config = trusting(&cert);
    let trickling: Vec<_> = (0..4)
        .map(|_| {
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let client = rustls::ClientConnection::new(config.clone(), name).unwrap();
            let mut tls = rustls::StreamOwned::new(client, connect_from(HOSTILE, &cluster));
            tls.write_all(announcing_head(&ch).as_bytes()).unwrap();
            tls.flush().unwrap();
            assert!(!tls.conn.is_handshaking());
            tls
        })
        .collect();
    let (stop, trickler) = trickle(trickling);

    // Its 9th connection is refused at once: 503, as beyond the cap of all connections (in
    // plain text: no handshake is spent on a refused connection); so is every one after it, up
    // to what would have filled the cap of all connections (16).
    for n in 9..=16 {
        let answer = read_all(&mut connect_from(HOSTILE, &cluster));
        assert!(answer.starts_with("HTTP/1.1 503"), "127.0.0.2's connection {n} was not refused: {answer:?}");
    }

    // Meanwhile 127.0.0.1 (Meta) is served at once, and its message is stored.
    let started = Instant::now();
    assert_eq!(post_https(&cluster, &ch, &cert, "wamid.sources.1"), Ok(200));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "127.0.0.1's POST took {took:?} while 127.0.0.2 held its 8 connections");
    assert!(stored(&cluster, "wamid.sources.1"));
    wait_for_refusal(&metrics, "source_connections");

    stop.store(true, Ordering::Relaxed);
    trickler.join().unwrap();
    drop(idle);
}

#[test]
fn a_source_over_its_body_budget_is_told_503_while_another_posts_a_larger_body() {
    let (cluster, metrics) = cluster_with("whatsapp_channel.max_body_bytes_per_source = '64kB'");
    let ch = cluster.add_channel("source-bytes");
    cluster.wait_for_log("max_body_bytes_per_source (65536 bytes) is under max_body_bytes");
    // 127.0.0.2 announces 3 MB bodies on 4 connections and sends 24 KiB of each at once (96 KiB
    // in all, over its 64 kB), then trickles the rest.
    let hostile: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect_from(HOSTILE, &cluster);
            s.write_all(announcing_head(&ch).as_bytes()).unwrap();
            s.write_all(&[b'x'; 24 << 10]).unwrap();
            s
        })
        .collect();
    let (stop, trickler) = trickle(hostile.iter().map(|s| s.try_clone().unwrap()).collect());
    let answers = poll(|| {
        let answers: Vec<String> = hostile
            .iter()
            .map(|s| {
                s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                let mut buf = [0u8; 256];
                (&*s).read(&mut buf).map(|n| String::from_utf8_lossy(&buf[..n]).into_owned()).unwrap_or_default()
            })
            .collect();
        answers.iter().any(|a| a.starts_with("HTTP/1.1 503")).then_some(answers)
    });
    assert!(answers.is_some(), "none of 127.0.0.2's bodies over its 64 kB was refused");
    // 127.0.0.1's body, larger than each of them (48 kB), has its own 64 kB: stored.
    let payload = text(&ch, "wamid.source-bytes.1", &"y".repeat(48_000));
    let answer = ch.post_signed_to(&cluster, &payload).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(stored(&cluster, "wamid.source-bytes.1"));
    wait_for_refusal(&metrics, "source_bytes");
    stop.store(true, Ordering::Relaxed);
    trickler.join().unwrap();
}

#[test]
fn allowed_sources_close_strangers_and_a_bad_entry_keeps_the_list() {
    let (cluster, metrics) = cluster_with("");
    let ch = cluster.add_channel("allowed");
    // A signed POST from 127.0.0.2: the answer, "" when closed without one.
    let from_stranger = |wamid: &str| {
        let mut s = connect_from(HOSTILE, &cluster);
        let _ = s.write_all(&raw_signed_post(&ch, &text(&ch, wamid, "hi")));
        let mut out = Vec::new();
        match s.read_to_end(&mut out) {
            Ok(_) => String::from_utf8_lossy(&out).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => String::new(),
            Err(e) => panic!("127.0.0.2 was neither answered nor closed within 10 s: {e}"),
        }
    };
    alter_system(&cluster, "whatsapp_channel.allowed_sources", "127.0.0.1, ::1");
    cluster.wait_for_log("accepts connections from only 127.0.0.1/32, ::1/128");
    assert_eq!(from_stranger("wamid.allowed.1"), "", "a stranger was answered");
    assert_eq!(ch.post_signed_to(&cluster, &text(&ch, "wamid.allowed.2", "hi")).unwrap().status, 200);
    // A bad entry is named, and the list stays as it was.
    alter_system(&cluster, "whatsapp_channel.allowed_sources", "127.0.0.0/24, 127.0.0.2/33");
    cluster.wait_for_log("keeps its previous allowed_sources: whatsapp_channel.allowed_sources: '127.0.0.2/33'");
    assert_eq!(from_stranger("wamid.allowed.3"), "", "a bad list let a stranger in");
    // Unset: any address again.
    alter_system(&cluster, "whatsapp_channel.allowed_sources", "");
    cluster.wait_for_log("accepts connections from any address");
    let answer = from_stranger("wamid.allowed.4");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for (wamid, kept) in [("wamid.allowed.1", false), ("wamid.allowed.2", true), ("wamid.allowed.3", false)] {
        assert_eq!(stored(&cluster, wamid), kept, "{wamid}");
    }
    wait_for_refusal(&metrics, "source_not_allowed");
}
