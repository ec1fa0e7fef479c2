//! An HTTP/1.1 server with hard bounds, for webhook receivers and the test doubles they talk to.
//!
//! hyper (1.x) speaks the protocol: strict framing (conflicting `Content-Length`s, bad chunking
//! and malformed heads are answered 400 and the connection closed), chunked bodies, HEAD,
//! `Expect: 100-continue`, keep-alive and a deadline for each request head. On top of it this
//! crate adds what a server that strangers can reach needs and hyper leaves to its user:
//!
//! - a cap on open connections: beyond it a connection is answered 503 and closed;
//! - per client address ([`sources`]): a cap on its open connections (503), one on its bodies'
//!   bytes in flight (503), and an allow-list (others are closed without a word), so that one
//!   client cannot take what all share;
//! - a body limit, answered 413 before the body is read when its length is announced;
//! - a deadline for the body (408), after the head's own;
//! - a budget for the bytes of all bodies in flight together (503 when spent), so that many
//!   large or slow bodies cannot take the process's memory;
//! - optional TLS (rustls), whose certificate can be swapped while serving ([`Tls`]).
//!
//! And [`handover`]: the frames in which sibling servers of one service hand accepted requests
//! to each other over a Unix socket, and the check of who is at its other end.
//!
//! Handlers are plain blocking code. They run on tokio's blocking pool, never on the threads
//! that drive connections, so a handler that waits (for a COMMIT, say) holds no connection
//! back, and an idle connection costs a few kilobytes, not a thread. A handler may also take a
//! request right on the connection's thread ([`Handler::quick`]) when it can do so without
//! blocking, and answer [`Later`], when another thread keeps its [`Promise`]: a webhook that
//! waits for a COMMIT then holds no thread at all, and costs no hop to the pool and back.
//!
//! Why hyper: tiny_http handed new keep-alive connections to threads still busy with others
//! (15 s stalls at 16 and 64 connections, BENCHMARKS.md) and had no timeouts; the first version
//! of this crate was a hand-written server on httparse, and a hostile review found framing and
//! deadline holes in it. hyper is the maintained, fuzzed HTTP implementation most Rust servers
//! stand on.

mod body;
pub mod capacity;
pub mod handover;
pub mod socket;
pub mod sources;
mod tls;

pub use sources::{AllowList, Cidr, SourceLimits};
pub use tls::{Tls, load as load_tls};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use sources::{Source, Sources};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

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

/// What the server calls. `quick` is offered each request first, on the thread that drives
/// its connection, where it must not block: it answers now, or [`Later`], or gives the request
/// back for `handle` (the default). `handle` runs on a thread of the blocking pool and may
/// block. `refused` is told about requests and connections the server refused itself, and
/// why, for logging and counting, and must not block.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> Response;
    fn quick(&self, request: Request) -> Result<Quick, Request> {
        Err(request)
    }
    fn refused(&self, _reason: Reason, _why: &str) {}
}

/// Why the server refused a request or a connection itself: a closed set, so that a handler
/// can count each (see [`Reason::status`] for what the client was told).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Malformed: bad framing, a head too large, a body that could not be read.
    BadRequest,
    /// The request head or body did not arrive in time.
    Timeout,
    /// The body is over the body limit.
    TooLarge,
    /// The connection cap or the budget of all bodies is spent, or no connection could be
    /// accepted (out of file descriptors, say).
    Busy,
    /// A connection ended without an answer: its TLS handshake failed.
    Closed,
    /// The client's address holds its cap of open connections.
    SourceConnections,
    /// The client's address's bodies hold their cap of bytes.
    SourceBytes,
    /// The client's address is not in the allow-list: closed without a word.
    SourceNotAllowed,
}

impl Reason {
    /// The status the client was answered (400 also stands for hyper's 431); 0 when the
    /// connection was closed without an answer.
    pub fn status(self) -> u16 {
        match self {
            Reason::BadRequest => 400,
            Reason::Timeout => 408,
            Reason::TooLarge => 413,
            Reason::Busy | Reason::SourceConnections | Reason::SourceBytes => 503,
            Reason::Closed | Reason::SourceNotAllowed => 0,
        }
    }
}

/// What [`Handler::quick`] did with a request.
pub enum Quick {
    Now(Response),
    Later(Later),
}

/// An answer that another thread will give, by keeping its [`Promise`] (see [`later`]).
pub struct Later(std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>);

impl Later {
    /// Waits for the answer on this thread: for a `handle` (on the blocking pool) that hands its
    /// work on the same way as `quick` does.
    pub fn wait(self) -> Response {
        tokio::runtime::Handle::current().block_on(self.0)
    }
}

/// Where another thread sends what a [`Later`] answer is made of.
pub struct Promise<T>(tokio::sync::oneshot::Sender<T>);

impl<T> Promise<T> {
    /// Sends `value`; if the request is gone (its connection closed), nothing happens.
    pub fn keep(self, value: T) {
        let _ = self.0.send(value);
    }
}

/// A promise of a `T` for a caller that is not a request: the receiving end is its own.
pub fn promise<T>() -> (Promise<T>, Kept<T>) {
    let (promise, kept) = tokio::sync::oneshot::channel();
    (Promise(promise), Kept(kept))
}

/// What a [`promise`] sends, for a thread outside the runtime to wait for.
pub struct Kept<T>(tokio::sync::oneshot::Receiver<T>);

impl<T> Kept<T> {
    /// Blocks until the promise is kept (`None`: dropped unkept). Not on a runtime thread.
    pub fn wait(self) -> Option<T> {
        self.0.blocking_recv().ok()
    }
}

/// A promise of a `T` and the answer that waits for it: `answer` makes the response of what was
/// sent, or of `None` if nothing came within `wait` or the promise was dropped unkept. `answer`
/// runs on a connection's thread, so it must not block.
pub fn later<T: Send + 'static>(
    wait: Duration,
    answer: impl FnOnce(Option<T>) -> Response + Send + 'static,
) -> (Promise<T>, Later) {
    let (promise, kept) = tokio::sync::oneshot::channel();
    let future = async move { answer(tokio::time::timeout(wait, kept).await.ok().and_then(Result::ok)) };
    (Promise(promise), Later(Box::pin(future)))
}

/// The bounds. `max_body_bytes` is shared so a configuration reload can change it live.
#[derive(Clone)]
pub struct Limits {
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// From when a connection starts waiting for a request (its first, or the next one on a
    /// kept-alive connection) until that request's whole head has arrived; also the TLS
    /// handshake's deadline. A connection that misses it is closed (with a 408 if part of a
    /// head had come), so it bounds idle keep-alive connections and trickled heads alike.
    pub head_timeout: Duration,
    /// From a request's head to the last byte of its body: beyond it, 408.
    pub body_timeout: Duration,
    pub max_body_bytes: Arc<AtomicUsize>,
    /// Bytes of all request bodies held at once, from their first byte until their handler
    /// has answered; a body that does not fit is answered 503.
    pub body_budget_bytes: usize,
    /// The bounds per client address, shared so that a reload can change them live; none by
    /// default.
    pub sources: Arc<SourceLimits>,
    /// Largest request head (request line and headers); larger ones get 431.
    pub max_head_bytes: usize,
    /// Most handlers running at once (each on its own thread of the blocking pool); more wait.
    pub handler_threads: usize,
    /// Threads that drive connections. 1 (the default): the thread that accepts them drives
    /// them too (a current-thread runtime), so a request's wake-ups (its bytes arriving, its
    /// answer kept by another thread) each wake that one thread. More: a work-stealing pool of
    /// that many, which also wakes idle workers to steal. Under the listener's load on 2 cores
    /// one thread costs the same CPU a message as a pool of two within the noise (1.02 and 0.97
    /// at 16 and 64 connections, 5 alternating rounds), with a lower HTTP p99 at 64 (23 against
    /// 28 ms): BENCHMARKS.md, 7 December 2026.
    pub io_threads: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 4096,
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_body_bytes: Arc::new(AtomicUsize::new(4 << 20)),
            body_budget_bytes: 64 << 20,
            sources: Arc::new(SourceLimits::default()),
            max_head_bytes: 16 << 10,
            handler_threads: 512,
            io_threads: 1,
        }
    }
}

/// Connections beyond the cap that are still being told 503; more are closed without a word.
const MAX_REFUSING: usize = 64;

struct Server {
    limits: Limits,
    handler: Arc<dyn Handler>,
    tls: Arc<Tls>,
    connections: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    bodies: Arc<Semaphore>,
    sources: Arc<Sources>,
}

/// Serves `listener` (already bound, so bind errors surface at once) on threads of its own,
/// speaking what `tls` says when each connection arrives. Those threads block every signal,
/// so the process's signal handlers keep running on the caller's threads only (a Postgres
/// backend's handlers must).
pub fn serve(listener: TcpListener, limits: Limits, tls: Arc<Tls>, handler: Arc<dyn Handler>) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let server = Arc::new(Server {
        connections: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
        bodies: Arc::new(Semaphore::new(limits.body_budget_bytes.min(Semaphore::MAX_PERMITS))),
        sources: Sources::new(limits.sources.clone()),
        limits,
        handler,
        tls,
    });
    with_signals_blocked(|| {
        let mut builder = if server.limits.io_threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut pool = tokio::runtime::Builder::new_multi_thread();
            pool.worker_threads(server.limits.io_threads);
            pool
        };
        let runtime = builder
            .max_blocking_threads(server.limits.handler_threads.max(1))
            .thread_name("http")
            .enable_all()
            .build()?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        std::thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || runtime.block_on(accept(listener, server)))?;
        Ok(())
    })
}

/// Runs `f` with every signal blocked on this thread, so the threads it starts inherit the
/// mask; restores the mask after.
fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        let result = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        result
    }
}

async fn accept(listener: tokio::net::TcpListener, server: Arc<Server>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: pause instead of spinning on the same error.
                server.handler.refused(Reason::Busy, &format!("cannot accept a connection: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !server.limits.sources.allowed().allows(peer.ip()) {
            let why = format!("{} is not in the allowed sources (whatsapp_channel.allowed_sources)", peer.ip());
            server.handler.refused(Reason::SourceNotAllowed, &why);
            continue; // dropped: closed without a word
        }
        // Its source's slot first, taken before any TLS handshake, so that idle handshakes
        // count; one over its cap takes nothing from what all connections share.
        let Some(source) = server.sources.open(peer.ip()) else {
            let from = match sources::source_of(peer.ip()) {
                std::net::IpAddr::V6(net) => format!("{net}/64"),
                v4 => v4.to_string(),
            };
            let why = format!("too many connections from {from} (whatsapp_channel.max_connections_per_source)");
            server.handler.refused(Reason::SourceConnections, &why);
            refuse_connection(stream, &server);
            continue;
        };
        match server.connections.clone().try_acquire_owned() {
            Ok(slot) => {
                let server = server.clone();
                tokio::spawn(async move {
                    connection(stream, Arc::new(source), &server).await;
                    drop(slot);
                });
            }
            Err(_) => {
                drop(source);
                server.handler.refused(Reason::Busy, "too many connections (whatsapp_channel.max_connections)");
                refuse_connection(stream, &server);
            }
        }
    }
}

/// Answers a connection refused at accept 503, if fewer than [`MAX_REFUSING`] are being
/// answered so already; else closes it without a word.
fn refuse_connection(stream: tokio::net::TcpStream, server: &Server) {
    if let Ok(slot) = server.refusing.clone().try_acquire_owned() {
        tokio::spawn(async move {
            refuse_busy(stream).await;
            drop(slot);
        });
    }
}

/// Tells a connection beyond a cap (all connections', or its source's) 503 (within a second) and closes it.
async fn refuse_busy(mut stream: tokio::net::TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
        X-Content-Type-Options: nosniff\r\nConnection: close\r\nContent-Length: 30\r\n\r\n\
        Too many connections, retry.\r\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(BUSY).await?;
        stream.shutdown().await
    })
    .await;
}

/// Serves one connection, which holds a slot of its `source` until it ends.
async fn connection(stream: tokio::net::TcpStream, source: Arc<Source>, server: &Arc<Server>) {
    let _ = stream.set_nodelay(true);
    match server.tls.current() {
        None => http(stream, source, server).await,
        Some(config) => {
            let handshake = tokio_rustls::TlsAcceptor::from(config).accept(stream);
            match tokio::time::timeout(server.limits.head_timeout, handshake).await {
                Ok(Ok(stream)) => http(stream, source, server).await,
                Ok(Err(e)) => server.handler.refused(Reason::Closed, &format!("TLS handshake failed: {e}")),
                Err(_) => {}
            }
        }
    }
}

async fn http<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: IO, source: Arc<Source>, server: &Arc<Server>) {
    let service = {
        let server = server.clone();
        service_fn(move |request| respond(request, server.clone(), source.clone()))
    };
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(server.limits.head_timeout)
        .max_buf_size(server.limits.max_head_bytes.max(8192))
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .await;
    if let Err(e) = served {
        // hyper has answered what it could (400 for bad framing, 431, 408) and closed.
        if e.is_parse() || e.is_parse_too_large() {
            server.handler.refused(Reason::BadRequest, &format!("malformed request: {e}"));
        } else if e.is_timeout() {
            server.handler.refused(Reason::Timeout, "Request timeout: the request head did not arrive in time");
        }
    }
}

/// The service may end a connection without an answer ([`Response::close`]).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the handler")
    }
}

impl std::error::Error for Dropped {}

async fn respond(
    request: hyper::Request<Incoming>,
    server: Arc<Server>,
    source: Arc<Source>,
) -> Result<hyper::Response<Full<Bytes>>, Dropped> {
    let (parts, mut incoming) = request.into_parts();
    let max = server.limits.max_body_bytes.load(Ordering::Relaxed);
    let mut charge = body::Charge::new(server.bodies.clone(), source);
    let read = tokio::time::timeout(server.limits.body_timeout, body::read(&mut incoming, max, &mut charge)).await;
    let body = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(refusal)) => {
            if refusal == body::TOO_LARGE {
                body::drain_later(incoming, server.limits.body_timeout);
            }
            return Ok(refuse(&server, refusal));
        }
        Err(_) => return Ok(refuse(&server, body::LATE)),
    };
    let request = Request {
        method: parts.method.as_str().to_string(),
        target: parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string()),
        headers: parts.headers.iter().map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec())).collect(),
        body,
    };
    let handler = server.handler.clone();
    let quick = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.quick(request)));
    let response = match quick {
        Ok(Ok(Quick::Now(response))) => Some(response),
        Ok(Ok(Quick::Later(later))) => Unwinding(later).await.ok(),
        Ok(Err(request)) => tokio::task::spawn_blocking(move || handler.handle(request)).await.ok(),
        Err(_) => None,
    };
    drop(charge); // the handler has dropped the body
    match response {
        Some(response) if response.status == 0 => Err(Dropped),
        Some(response) => Ok(answer(response, false)),
        None => Ok(answer(Response::text(500, "Internal error: the handler panicked"), true)),
    }
}

/// A [`Later`] answer whose panic is caught: `Err` instead of taking the connection's task down.
struct Unwinding(Later);

impl std::future::Future for Unwinding {
    type Output = std::thread::Result<Response>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let inner = self.0.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(response)) => std::task::Poll::Ready(Ok(response)),
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    }
}

/// Answers a request the server refused itself, and closes the connection after it: what the
/// client still sends is not read.
fn refuse(server: &Server, refusal: body::Refusal) -> hyper::Response<Full<Bytes>> {
    server.handler.refused(refusal.reason, refusal.why);
    answer(Response::text(refusal.reason.status(), refusal.why), true)
}

fn answer(response: Response, close: bool) -> hyper::Response<Full<Bytes>> {
    let status = hyper::StatusCode::from_u16(response.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let mut answer = hyper::Response::new(Full::new(Bytes::from(response.body)));
    *answer.status_mut() = status;
    let headers = answer.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&response.content_type) {
        headers.insert(CONTENT_TYPE, v);
    }
    // nosniff: a browser must never read an answer (an echoed challenge) as anything else.
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    if close {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    answer
}

#[cfg(test)]
mod tests;
