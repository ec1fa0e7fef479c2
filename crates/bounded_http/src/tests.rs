//! The bounds, tried over real sockets on loopback.

use super::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

/// The caps per client address and the allow-list, over 127.0.0.1 to 127.0.0.3.
mod sources;

/// Echoes method, target and body; `/hold` says it is being handled (its body read and
/// charged) and answers only once the test opens [`GATE`]. Keeps what the server refused.
#[derive(Default)]
struct Echo {
    refusals: Arc<std::sync::Mutex<Vec<Reason>>>,
}
impl Handler for Echo {
    fn refused(&self, reason: Reason, _why: &str) {
        self.refusals.lock().unwrap().push(reason);
    }

    /// Taken on the connection's thread: `/now` answered at once; `/later?<tag>` answered when a
    /// test keeps the promise filed under its tag (in [`PROMISES`]), `/unkept` when its promise is
    /// dropped, `/panic` by an answer that panics; the rest go to `handle`.
    fn quick(&self, r: Request) -> Result<Quick, Request> {
        match r.path() {
            "/now" => Ok(Quick::Now(Response::text(200, "now"))),
            "/later" => {
                let (promise, later) = later(Duration::from_secs(5), |kept: Option<String>| {
                    kept.map_or_else(|| Response::text(503, "nothing came"), |v| Response::text(200, v))
                });
                PROMISES.lock().unwrap().push((r.query().to_string(), promise));
                Ok(Quick::Later(later))
            }
            "/unkept" => Ok(Quick::Later(
                later(Duration::from_secs(5), |kept: Option<String>| {
                    Response::text(if kept.is_none() { 503 } else { 200 }, "unkept")
                })
                .1,
            )),
            "/panic" => Ok(Quick::Later(later(Duration::ZERO, |_: Option<String>| panic!("an answer that panics")).1)),
            _ => Err(r),
        }
    }

    fn handle(&self, r: Request) -> Response {
        if r.path() == "/wait" {
            // A blocking handler that hands its work on like `quick` does, and waits for it.
            let (promise, later) = later(Duration::from_secs(5), |kept: Option<String>| {
                Response::text(200, kept.unwrap_or_else(|| "nothing came".into()))
            });
            std::thread::spawn(move || promise.keep("kept by another thread".into()));
            return later.wait();
        }
        if r.path() == "/hold" {
            let (lock, opened) = &GATE;
            let mut state = lock.lock().unwrap();
            state.0 = true;
            opened.notify_all();
            while !state.1 {
                state = opened.wait(state).unwrap();
            }
        }
        Response::text(200, format!("{} {} {}", r.method, r.target, String::from_utf8_lossy(&r.body)))
    }
}

/// Promises of `/later` requests, by their tag.
static PROMISES: std::sync::Mutex<Vec<(String, Promise<String>)>> = std::sync::Mutex::new(Vec::new());

/// Keeps (with "kept <tag>") the promises filed under `tag`, once `n` of them are waiting.
fn keep_when_waiting(tag: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut promises = PROMISES.lock().unwrap();
        if promises.iter().filter(|(t, _)| t == tag).count() >= n {
            let (mine, others): (Vec<_>, Vec<_>) = promises.drain(..).partition(|(t, _)| t == tag);
            *promises = others;
            for (_, promise) in mine {
                promise.keep(format!("kept {tag}"));
            }
            return;
        }
        drop(promises);
        assert!(Instant::now() < deadline, "{n} /later?{tag} requests never all waited at once");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// (a /hold request is being handled, the test let it answer), and the condition for both.
static GATE: (std::sync::Mutex<(bool, bool)>, std::sync::Condvar) =
    (std::sync::Mutex::new((false, false)), std::sync::Condvar::new());

fn start_with(limits: Limits, tls: Arc<Tls>) -> std::net::SocketAddr {
    start_recording(limits, tls).0
}

/// A server, and what it refused, by reason.
fn start_recording(limits: Limits, tls: Arc<Tls>) -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<Reason>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let echo = Echo::default();
    let refusals = echo.refusals.clone();
    serve(listener, limits, tls, Arc::new(echo)).unwrap();
    (addr, refusals)
}

/// A connection to `addr` from the loopback address `from` (127.0.0.2, say: all of 127/8 is
/// the loopback interface's), as from another client.
fn connect_from(from: [u8; 4], addr: std::net::SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&std::net::SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

/// Waits until `n` `/later?<tag>` requests wait for their promise (their bodies charged).
fn wait_until_waiting(tag: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while PROMISES.lock().unwrap().iter().filter(|(t, _)| t == tag).count() < n {
        assert!(Instant::now() < deadline, "{n} /later?{tag} requests never all waited at once");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn start(limits: Limits) -> std::net::SocketAddr {
    start_with(limits, Tls::plain())
}

/// Writes `request` and reads one answer (what arrives within a read or two).
fn exchange(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0; 8192];
    let n = stream.read(&mut buf).unwrap();
    let mut answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    // The head and the body may come in two reads.
    if let Some((head, body)) = answer.split_once("\r\n\r\n") {
        let length = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse::<usize>()))
            .and_then(Result::ok)
            .unwrap_or(0);
        if body.len() < length && !head.starts_with("HTTP/1.1 1") && !request.starts_with(b"HEAD") {
            let n = stream.read(&mut buf).unwrap();
            answer.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    answer
}

/// Everything the server sends on `stream` until it closes it (or 5 s pass).
fn read_all(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn serves_several_requests_on_one_keep_alive_connection() {
    let addr = start(Limits::default());
    let mut s = TcpStream::connect(addr).unwrap();
    let a = exchange(&mut s, b"POST /webhook/a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
    assert!(a.starts_with("HTTP/1.1 200 OK\r\n") && a.ends_with("POST /webhook/a?x=1 hello"), "{a}");
    assert!(a.to_ascii_lowercase().contains("x-content-type-options: nosniff"), "{a}");
    let b = exchange(&mut s, b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(b.ends_with("GET /b "), "{b}");
}

#[test]
fn many_connections_opened_together_are_all_served() {
    let addr = start(Limits::default());
    let mut conns: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for (i, s) in conns.iter_mut().enumerate() {
        let answer = exchange(s, format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes());
        assert!(answer.ends_with(&format!("GET /{i} ")), "{answer}");
    }
}

#[test]
fn refuses_oversized_and_stalled_bodies() {
    let limits = Limits {
        body_timeout: Duration::from_millis(300),
        max_body_bytes: Arc::new(AtomicUsize::new(10)),
        ..Limits::default()
    };
    let addr = start(limits);
    let mut big = TcpStream::connect(addr).unwrap();
    let answer = exchange(&mut big, b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A chunked body is read within the same limit.
    let mut chunked = TcpStream::connect(addr).unwrap();
    let answer = exchange(
        &mut chunked,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A client that sends half a body and stops gets 408 after the deadline.
    let mut slow = TcpStream::connect(addr).unwrap();
    let answer = exchange(&mut slow, b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nhalf");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[test]
fn a_client_that_sends_its_whole_oversized_body_first_still_reads_413() {
    let addr = start(Limits { max_body_bytes: Arc::new(AtomicUsize::new(1024)), ..Limits::default() });
    let mut s = TcpStream::connect(addr).unwrap();
    let body = vec![b'x'; 16 << 20]; // far more than the socket buffers hold
    s.write_all(format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes()).unwrap();
    s.write_all(&body).expect("the connection was reset while the body was being sent");
    let answer = read_all(&mut s);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn chunked_bodies_are_read_and_garbage_is_refused() {
    let addr = start(Limits::default());
    let mut s = TcpStream::connect(addr).unwrap();
    let chunked =
        exchange(&mut s, b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\n!!!\r\n0\r\n\r\n");
    assert!(chunked.starts_with("HTTP/1.1 200") && chunked.ends_with("POST /c hello!!!"), "{chunked}");
    let garbage = exchange(&mut TcpStream::connect(addr).unwrap(), b"\x16\x03\x01 hello\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
}

#[test]
fn connections_beyond_the_cap_are_told_503() {
    let addr = start(Limits { max_connections: 2, ..Limits::default() });
    let mut a = TcpStream::connect(addr).unwrap();
    let mut b = TcpStream::connect(addr).unwrap();
    // Both are served (so both are counted) before the third arrives.
    assert!(exchange(&mut a, b"GET /a HTTP/1.1\r\n\r\n").ends_with("GET /a "));
    assert!(exchange(&mut b, b"GET /b HTTP/1.1\r\n\r\n").ends_with("GET /b "));
    let mut c = TcpStream::connect(addr).unwrap();
    let answer = read_all(&mut c);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // A slot frees when a connection closes.
    drop(a);
    let served = (0..100).any(|_| {
        let mut d = TcpStream::connect(addr).unwrap();
        d.write_all(b"GET /d HTTP/1.1\r\n\r\n").unwrap();
        let answer = read_all_or_one(&mut d);
        answer.ends_with("GET /d ") || {
            std::thread::sleep(Duration::from_millis(20));
            false
        }
    });
    assert!(served, "no slot came free after a connection closed");
}

/// One answer, or everything until the server closes.
fn read_all_or_one(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0; 4096];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn the_body_budget_is_shared_by_all_bodies_in_flight() {
    let addr = start(Limits { body_budget_bytes: 100, ..Limits::default() });
    let body = "x".repeat(60);
    let request = |path: &str| format!("POST {path} HTTP/1.1\r\nContent-Length: 60\r\n\r\n{body}").into_bytes();
    let mut held = TcpStream::connect(addr).unwrap();
    held.write_all(&request("/hold")).unwrap();
    // Its 60 bytes are charged once its handler runs.
    let (lock, changed) = &GATE;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut state = lock.lock().unwrap();
    while !state.0 && Instant::now() < deadline {
        state = changed.wait_timeout(state, Duration::from_millis(100)).unwrap().0;
    }
    assert!(state.0, "the held request never reached its handler");
    drop(state);
    // While they are held, another 60 do not fit.
    let refused = exchange(&mut TcpStream::connect(addr).unwrap(), &request("/fast"));
    assert!(refused.starts_with("HTTP/1.1 503"), "a body over the budget was accepted: {refused}");
    lock.lock().unwrap().1 = true;
    changed.notify_all();
    assert!(read_all_or_one(&mut held).starts_with("HTTP/1.1 200"));
    // Given back once answered.
    let answer = exchange(&mut TcpStream::connect(addr).unwrap(), &request("/after"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn conflicting_content_lengths_are_refused_and_nothing_after_them_is_served() {
    let addr = start(Limits::default());
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 10\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let all = read_all(&mut s);
    assert!(all.starts_with("HTTP/1.1 400"), "{all}");
    assert_eq!(all.matches("HTTP/1.1").count(), 1, "a second answer was served: {all}");
    let plus = exchange(&mut TcpStream::connect(addr).unwrap(), b"POST /a HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello");
    assert!(plus.starts_with("HTTP/1.1 400"), "{plus}");
    let same = exchange(
        &mut TcpStream::connect(addr).unwrap(),
        b"POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert!(same.starts_with("HTTP/1.1 200") && same.ends_with("POST /a hello"), "{same}");
    // Both framings: the chunks are read (RFC 9112 §6.1) and the connection is closed after
    // the answer, so what a proxy reading the Content-Length would see as a second request is
    // never served.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"POST /a HTTP/1.1\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let all = read_all(&mut s);
    assert_eq!(all.matches("HTTP/1.1").count(), 1, "{all}");
    assert!(!all.contains("smuggled"), "{all}");
}

#[test]
fn a_head_framed_with_bare_line_feeds_is_read_exactly() {
    let addr = start(Limits::default());
    let mut s = TcpStream::connect(addr).unwrap();
    let a = exchange(&mut s, b"POST /lf HTTP/1.1\nHost: h\nContent-Length: 2\n\nhi");
    assert!(a.starts_with("HTTP/1.1 200") && a.ends_with("POST /lf hi"), "{a}");
    let b = exchange(&mut s, b"GET /next HTTP/1.1\r\n\r\n");
    assert!(b.ends_with("GET /next "), "the next request on the connection was misread: {b}");
}

#[test]
fn a_trickled_head_is_cut_off_at_the_head_deadline() {
    let addr = start(Limits { head_timeout: Duration::from_secs(1), ..Limits::default() });
    let mut s = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    s.write_all(b"G").unwrap();
    // One byte every 200 ms, never a line feed: each read would have its own timeout.
    let mut answered = None;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(200));
        let _ = s.write_all(b"E");
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(n) => {
                answered = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                answered = Some(format!("closed: {e}"));
                break;
            }
        }
    }
    let answered = answered.expect("the trickled head was never cut off");
    assert!(
        answered.starts_with("HTTP/1.1 408") || answered.is_empty() || answered.starts_with("closed"),
        "{answered:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "cut off after {:?}", started.elapsed());
}

#[test]
fn an_idle_connection_is_closed_after_the_head_deadline() {
    let addr = start(Limits { head_timeout: Duration::from_millis(500), ..Limits::default() });
    let mut s = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    assert_eq!(read_all(&mut s), "");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
}

#[test]
fn head_answers_carry_no_body_and_connection_tokens_are_read_as_a_list() {
    let addr = start(Limits::default());
    let mut s = TcpStream::connect(addr).unwrap();
    let head = exchange(&mut s, b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"), "{head:?}");
    let next = exchange(&mut s, b"GET /after HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n");
    assert!(next.starts_with("HTTP/1.1 200") && next.ends_with("GET /after "), "{next:?}");
    assert!(next.to_ascii_lowercase().contains("connection: close"), "{next:?}");
    assert_eq!(read_all(&mut s), "", "the connection stayed open after 'keep-alive, close'");
    let http10 = exchange(
        &mut TcpStream::connect(addr).unwrap(),
        b"POST /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    );
    assert!(!http10.contains("100 Continue") && http10.ends_with("POST /x ok"), "{http10:?}");
}

/// A self-signed certificate for `localhost` in `dir`: (cert.pem, key.pem), key mode 0600.
fn self_signed(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    use std::os::unix::fs::PermissionsExt;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), name.to_string()]).unwrap();
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert, key, certified.cert.der().to_vec())
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bounded_http-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A GET over TLS from a client that trusts only `trusted`; the answer, or the TLS error.
fn get_over_tls(addr: std::net::SocketAddr, trusted: &[u8]) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(trusted.to_vec())).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, TcpStream::connect(addr).unwrap());
    tls.write_all(b"GET /tls HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => Ok(String::from_utf8_lossy(&out).into_owned()),
        // Closed without close_notify after the whole answer: hyper closes, rustls complains.
        Err(_) if !out.is_empty() => Ok(String::from_utf8_lossy(&out).into_owned()),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn tls_serves_with_the_installed_certificate_and_takes_a_new_one_without_restarting() {
    let dir = scratch("tls");
    let (cert_a, key_a, der_a) = self_signed(&dir, "a");
    let (cert_b, key_b, der_b) = self_signed(&dir, "b");
    let tls = Tls::plain();
    tls.install(Some(load_tls(&cert_a, &key_a).unwrap()));
    let addr = start_with(Limits::default(), tls.clone());
    let answer = get_over_tls(addr, &der_a).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("GET /tls "), "{answer}");
    assert!(get_over_tls(addr, &der_b).is_err(), "a client trusting only b accepted a");
    tls.install(Some(load_tls(&cert_b, &key_b).unwrap()));
    assert!(get_over_tls(addr, &der_b).unwrap().starts_with("HTTP/1.1 200"));
    // Plain HTTP to a TLS port is refused, not served.
    let plain = read_all_or_one(&mut {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        s
    });
    assert!(!plain.contains("GET /"), "{plain}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_certificate_files_are_refused_with_the_reason() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("badtls");
    let (cert, key, _) = self_signed(&dir, "c");
    let (_, other_key, _) = self_signed(&dir, "d");
    let err = |c: &std::path::Path, k: &std::path::Path| load_tls(c, k).err().unwrap_or_default();
    assert!(err(&dir.join("missing.crt"), &key).contains("cannot read the certificate file"));
    assert!(err(&key, &key).contains("holds no PEM certificate"), "{}", err(&key, &key));
    let cert_as_key = dir.join("cert-as-key.pem");
    std::fs::copy(&cert, &cert_as_key).unwrap();
    std::fs::set_permissions(&cert_as_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let no_key = err(&cert, &cert_as_key);
    assert!(no_key.contains("holds no PEM private key"), "{no_key}");
    assert!(err(&cert, &other_key).contains("do not form a usable pair"), "{}", err(&cert, &other_key));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loose = err(&cert, &key);
    assert!(loose.contains("readable by others") && loose.contains("chmod 600"), "{loose}");
    assert!(!loose.contains("PRIVATE KEY-----"), "the error shows the key: {loose}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn quick_answers_come_now_or_later_and_a_waiting_request_holds_no_thread() {
    // One handler thread: the requests below all wait at once, so none of them may take one.
    let addr = start(Limits { handler_threads: 1, ..Limits::default() });
    let mut stream = TcpStream::connect(addr).unwrap();
    assert!(exchange(&mut stream, b"GET /now HTTP/1.1\r\nHost: x\r\n\r\n").ends_with("now"));
    // Still keep-alive afterwards, and the blocking pool still serves the rest, also waiting
    // for a promise there.
    assert!(exchange(&mut stream, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n").contains("GET /echo"));
    assert!(exchange(&mut stream, b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n").ends_with("kept by another thread"));

    let waiting: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                exchange(&mut s, b"GET /later?many HTTP/1.1\r\nHost: x\r\n\r\n")
            })
        })
        .collect();
    keep_when_waiting("many", 20);
    for answer in waiting {
        let answer = answer.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("kept many"), "{answer}");
    }

    let answer = exchange(&mut TcpStream::connect(addr).unwrap(), b"GET /unkept HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 503"), "a dropped promise is an answer too: {answer}");
    let answer = exchange(&mut TcpStream::connect(addr).unwrap(), b"GET /panic HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    // The server goes on after a panicking answer.
    assert!(exchange(&mut stream, b"GET /now HTTP/1.1\r\nHost: x\r\n\r\n").ends_with("now"));
}
