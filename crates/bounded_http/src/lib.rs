//! A small HTTP/1.1 server with hard bounds, for webhook receivers.
//!
//! Why not tiny_http: its connection pool hands a new keep-alive connection to a thread that is
//! still serving another one, so under a burst some connections get no answer until others
//! close (measured: 15 s stalls at 16 and 64 connections, BENCHMARKS.md), and it has no read
//! timeouts and no connection cap. Here every connection has its own thread, up to a cap
//! (503 beyond it); a client that stalls gets 408 after a deadline; a body over the limit gets
//! 413 before it is read. Parsing is httparse's (hyper's parser). Bodies need Content-Length,
//! as Meta's webhooks and Graph API clients send it.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A request as received.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent (`/webhook/support?hub.mode=...`).
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header of this name (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

/// An answer: status, content type and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8".into(), body: body.into().into_bytes() }
    }

    pub fn json(status: u16, body: impl Into<String>) -> Response {
        Response { status, content_type: "application/json".into(), body: body.into().into_bytes() }
    }

    /// Bytes of the given media type.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response { status, content_type: content_type.to_string(), body }
    }

    /// No answer at all: the connection is closed (for simulating a peer that drops it).
    pub fn close() -> Response {
        Response { status: 0, content_type: String::new(), body: Vec::new() }
    }
}

/// What the server calls. `handle` runs on the connection's thread; `refused` is told about
/// requests the server answered itself (408, 413, 503, ...), for logging.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> Response;
    fn refused(&self, _status: u16, _why: &str) {}
}

/// The bounds. `max_body_bytes` is shared so a configuration reload can change it live.
#[derive(Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// From the first byte of a request to its last, head and body: beyond it, 408.
    pub request_timeout: Duration,
    /// How long an idle keep-alive connection is kept open.
    pub idle_timeout: Duration,
    pub max_body_bytes: Arc<AtomicUsize>,
    pub max_head_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_body_bytes: Arc::new(AtomicUsize::new(4 << 20)),
            max_head_bytes: 16 << 10,
        }
    }
}

/// Accepts connections on `listener` (already bound: bind errors surface at once) on a thread
/// of its own, and serves each on a thread of its own.
pub fn serve(listener: TcpListener, limits: Limits, handler: Arc<dyn Handler>) -> std::io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("http-accept".into()).spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else {
                // Out of file descriptors, say: pause instead of spinning on the same error.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            if active.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
                active.fetch_sub(1, Ordering::AcqRel);
                handler.refused(503, "too many connections (the connection cap is reached)");
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = write_response(
                    &mut stream,
                    &Response::text(503, "Too many connections, retry later"),
                    false,
                    false,
                );
                let _ = stream.shutdown(Shutdown::Both);
                continue;
            }
            let (conn_limits, conn_handler, conn_active) = (limits.clone(), handler.clone(), active.clone());
            let spawned = std::thread::Builder::new().name("http-conn".into()).stack_size(256 << 10).spawn(move || {
                serve_connection(stream, &conn_limits, conn_handler.as_ref());
                conn_active.fetch_sub(1, Ordering::AcqRel);
            });
            if spawned.is_err() {
                active.fetch_sub(1, Ordering::AcqRel);
                handler.refused(503, "could not start a connection thread");
            }
        }
    })?;
    Ok(())
}

enum ReadError {
    /// The peer closed, or stayed idle past the keep-alive timeout: close quietly.
    Closed,
    /// Answer this and close.
    Refuse(u16, &'static str),
}

fn serve_connection(stream: TcpStream, limits: &Limits, handler: &dyn Handler) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else { return };
    let _ = writer.set_write_timeout(Some(limits.request_timeout));
    let mut reader = BufReader::with_capacity(16 << 10, stream);
    loop {
        match read_request(&mut reader, limits) {
            Ok((request, keep_alive)) => {
                let method_is_head = request.method == "HEAD";
                let response = handler.handle(request);
                if response.status == 0 {
                    break;
                }
                let head_only = method_is_head;
                if write_response(&mut writer, &response, keep_alive, head_only).is_err() || !keep_alive {
                    break;
                }
            }
            Err(ReadError::Closed) => break,
            Err(ReadError::Refuse(status, why)) => {
                handler.refused(status, why);
                let _ = write_response(&mut writer, &Response::text(status, why), false, false);
                if status == 413 {
                    // The client is still sending the body it announced; closing now would reset
                    // the connection before it reads the 413. Let it finish, within bounds.
                    let _ = writer.shutdown(Shutdown::Write);
                    discard(&mut reader, limits);
                }
                break;
            }
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

/// Reads and drops what the client still sends, for at most one request timeout and 64 MB.
fn discard(reader: &mut BufReader<TcpStream>, limits: &Limits) {
    let deadline = Instant::now() + limits.request_timeout;
    let mut buf = [0u8; 64 << 10];
    let mut left: usize = 64 << 20;
    while left > 0 && time_left(reader, deadline).is_ok() {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Sets the socket's read timeout to what is left of `deadline`; `Err` when it has passed.
fn time_left(reader: &BufReader<TcpStream>, deadline: Instant) -> Result<(), ReadError> {
    let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
    let left = left.ok_or(ReadError::Refuse(408, "Request timeout: the request did not arrive in time"))?;
    let _ = reader.get_ref().set_read_timeout(Some(left));
    Ok(())
}

/// Reads a request head up to the empty line that ends it (CRLF or a bare LF, which httparse
/// reads the same way), within `deadline` as a whole: every read gets only what is left of it,
/// so a head trickled a byte at a time is cut off at the deadline, not after many timeouts.
fn read_head(reader: &mut BufReader<TcpStream>, deadline: Instant, max: usize) -> Result<Vec<u8>, ReadError> {
    let mut head = Vec::with_capacity(1024);
    let mut line_start = 0;
    loop {
        time_left(reader, deadline)?;
        let available = match reader.fill_buf() {
            Ok([]) => return Err(ReadError::Closed),
            Ok(bytes) => bytes,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(ReadError::Refuse(408, "Request timeout: the request head did not arrive in time"));
            }
            Err(_) => return Err(ReadError::Closed),
        };
        let (taken, ended) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        head.extend_from_slice(&available[..taken]);
        reader.consume(taken);
        if head.len() > max {
            return Err(ReadError::Refuse(431, "Request header fields too large"));
        }
        if !ended {
            continue;
        }
        let line = &head[line_start..];
        if line == b"\r\n" || line == b"\n" {
            if line_start == 0 {
                head.clear(); // a stray empty line between requests (RFC 9112 2.2)
                continue;
            }
            return Ok(head);
        }
        line_start = head.len();
    }
}

/// The value of a Content-Length header: digits only (no sign, no spaces inside), so that no
/// proxy in front can read the same header as another length.
fn content_length(value: &[u8]) -> Option<usize> {
    let v = value.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn read_request(reader: &mut BufReader<TcpStream>, limits: &Limits) -> Result<(Request, bool), ReadError> {
    // Wait for the first byte of the next request for as long as a connection may idle.
    let _ = reader.get_ref().set_read_timeout(Some(limits.idle_timeout));
    match reader.fill_buf() {
        Ok([]) => return Err(ReadError::Closed),
        Ok(_) => {}
        Err(_) => return Err(ReadError::Closed),
    }
    let deadline = Instant::now() + limits.request_timeout;
    let head = read_head(reader, deadline, limits.max_head_bytes)?;
    let mut header_slots = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut header_slots);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(ReadError::Refuse(400, "Bad request: not HTTP/1.x")),
    }
    let method = parsed.method.unwrap_or_default().to_string();
    let target = parsed.path.unwrap_or_default().to_string();
    let http10 = parsed.version == Some(0);
    let headers: Vec<(String, Vec<u8>)> =
        parsed.headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).trim().to_ascii_lowercase())
    };
    if find("transfer-encoding").is_some() {
        return Err(ReadError::Refuse(411, "Length required: send the body with Content-Length"));
    }
    // Every Content-Length must be the same valid number: two different ones are how a request
    // is smuggled past a proxy that reads the other one.
    let mut lengths =
        headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-length")).map(|(_, v)| content_length(v));
    let length = match lengths.next() {
        None => 0,
        Some(first) => {
            let first = first.ok_or(ReadError::Refuse(400, "Bad request: invalid Content-Length"))?;
            if lengths.any(|other| other != Some(first)) {
                return Err(ReadError::Refuse(400, "Bad request: conflicting Content-Length headers"));
            }
            first
        }
    };
    if length > limits.max_body_bytes.load(Ordering::Relaxed) {
        return Err(ReadError::Refuse(413, "Payload too large"));
    }
    // (100 Continue is HTTP/1.1: an HTTP/1.0 client would read it as the answer.)
    if !http10 && find("expect").as_deref() == Some("100-continue") && length > 0 {
        let _ = reader.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    // The body grows as its bytes arrive, never by what the client merely announced.
    let mut body = Vec::with_capacity(length.min(64 << 10));
    let mut chunk = [0u8; 16 << 10];
    while body.len() < length {
        time_left(reader, deadline)?;
        let want = (length - body.len()).min(chunk.len());
        match reader.read(&mut chunk[..want]) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(ReadError::Refuse(408, "Request timeout: the body did not arrive in time"));
            }
            Err(_) => return Err(ReadError::Closed),
        }
    }
    // Connection is a list of tokens: "keep-alive, close" closes.
    let connection = find("connection").unwrap_or_default();
    let has = |token: &str| connection.split(',').any(|t| t.trim() == token);
    let keep_alive = if http10 { has("keep-alive") && !has("close") } else { !has("close") };
    Ok((Request { method, target, headers, body }, keep_alive))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Writes `response`; for a HEAD request (`head_only`) without its body, which the client does
/// not read (on a kept-alive connection it would be taken for the next answer).
fn write_response(
    stream: &mut TcpStream,
    response: &Response,
    keep_alive: bool,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = format!(
        // nosniff: a browser must never read an answer (an echoed challenge) as anything else.
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\n{}\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len(),
        if keep_alive { "" } else { "Connection: close\r\n" }
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&response.body);
    }
    stream.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    struct Echo;
    impl Handler for Echo {
        fn handle(&self, r: Request) -> Response {
            Response::text(200, format!("{} {} {}", r.method, r.target, String::from_utf8_lossy(&r.body)))
        }
    }

    fn start(limits: Limits) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        serve(listener, limits, Arc::new(Echo)).unwrap();
        addr
    }

    fn exchange(stream: &mut TcpStream, request: &[u8]) -> String {
        stream.write_all(request).unwrap();
        let mut buf = vec![0; 4096];
        let n = stream.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn serves_several_requests_on_one_keep_alive_connection() {
        let addr = start(Limits::default());
        let mut s = TcpStream::connect(addr).unwrap();
        let a = exchange(&mut s, b"POST /webhook/a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
        assert!(a.starts_with("HTTP/1.1 200 OK\r\n") && a.ends_with("POST /webhook/a?x=1 hello"), "{a}");
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
    fn refuses_oversized_bodies_stalled_clients_and_connections_beyond_the_cap() {
        let limits = Limits {
            max_connections: 2,
            request_timeout: Duration::from_millis(300),
            max_body_bytes: Arc::new(AtomicUsize::new(10)),
            ..Limits::default()
        };
        let addr = start(limits);
        let mut big = TcpStream::connect(addr).unwrap();
        assert!(exchange(&mut big, b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n").starts_with("HTTP/1.1 413"));
        drop(big);
        // A client that sends half a body and stops gets 408 after the deadline.
        let mut slow = TcpStream::connect(addr).unwrap();
        let answer = exchange(&mut slow, b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nhalf");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        // Two idle connections hold the cap: a third is told 503 at once.
        let _a = TcpStream::connect(addr).unwrap();
        let _b = TcpStream::connect(addr).unwrap();
        // The accept thread takes connections in order, so both are counted before this one.
        let mut c = TcpStream::connect(addr).unwrap();
        let mut buf = String::new();
        c.read_to_string(&mut buf).unwrap();
        assert!(buf.starts_with("HTTP/1.1 503"), "{buf}");
    }

    #[test]
    fn refuses_chunked_bodies_and_garbage() {
        let addr = start(Limits::default());
        let chunked =
            exchange(&mut TcpStream::connect(addr).unwrap(), b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(chunked.starts_with("HTTP/1.1 411"), "{chunked}");
        let garbage = exchange(&mut TcpStream::connect(addr).unwrap(), b"\x16\x03\x01 hello\r\n\r\n");
        assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    }

    /// Everything the server sends on `stream` until it closes it (or 3 s pass).
    fn read_all(stream: &mut TcpStream) -> String {
        stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn conflicting_content_lengths_are_refused_and_nothing_after_them_is_served() {
        let addr = start(Limits::default());
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 10\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        let all = read_all(&mut s);
        assert!(all.starts_with("HTTP/1.1 400"), "{all}");
        assert_eq!(all.matches("HTTP/1.1").count(), 1, "a second answer was served: {all}");
        let plus =
            exchange(&mut TcpStream::connect(addr).unwrap(), b"POST /a HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello");
        assert!(plus.starts_with("HTTP/1.1 400"), "{plus}");
        let same = exchange(
            &mut TcpStream::connect(addr).unwrap(),
            b"POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert!(same.starts_with("HTTP/1.1 200") && same.ends_with("POST /a hello"), "{same}");
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
    fn a_trickled_head_is_cut_off_at_the_request_deadline() {
        let addr = start(Limits { request_timeout: Duration::from_secs(1), ..Limits::default() });
        let mut s = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        s.write_all(b"G").unwrap();
        // One byte every 200 ms, never a line feed: each read would have its own timeout.
        let mut answered = String::new();
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(200));
            if s.write_all(b"E").is_err() {
                break;
            }
            s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
            let mut buf = [0u8; 512];
            if let Ok(n) = s.read(&mut buf) {
                answered = String::from_utf8_lossy(&buf[..n]).into_owned();
                break;
            }
        }
        assert!(answered.starts_with("HTTP/1.1 408"), "{answered:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "cut off after {:?}", started.elapsed());
    }

    #[test]
    fn head_answers_carry_no_body_and_connection_tokens_are_read_as_a_list() {
        let addr = start(Limits::default());
        let mut s = TcpStream::connect(addr).unwrap();
        let head = exchange(&mut s, b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"), "{head:?}");
        let next = exchange(&mut s, b"GET /after HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n");
        assert!(next.starts_with("HTTP/1.1 200") && next.ends_with("GET /after "), "{next:?}");
        assert!(next.contains("Connection: close"), "{next:?}");
        assert_eq!(read_all(&mut s), "", "the connection stayed open after 'keep-alive, close'");
        let http10 = exchange(
            &mut TcpStream::connect(addr).unwrap(),
            b"POST /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
        );
        assert!(!http10.contains("100 Continue") && http10.ends_with("POST /x ok"), "{http10:?}");
    }
}
