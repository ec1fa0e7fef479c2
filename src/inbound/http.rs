//! The HTTP side of the webhook listener. These threads never call into Postgres (pgrx panics
//! if they do): they route, check signatures and parse JSON (the server, `bounded_http` on
//! hyper, has already enforced the connection caps, all connections' and each client
//! address's, the allow-list of addresses, the deadlines, the body limit and budgets, and TLS), then hand a verified payload to the worker's main thread, whose answer comes only
//! after COMMIT. Meanwhile no thread waits: a webhook of ordinary size is taken on the thread
//! that drives its connection and answered when the main thread keeps its promise (see
//! [`bounded_http::Handler::quick`]); only a large body, or a request that must first wait for
//! a channel change to be read, goes to the blocking pool. Log lines go to the main thread
//! too, so they land in the server log.

use crate::channels::ChannelCredentials;
use crate::inbound::CounterKind;
use crate::inbound::handover::Direction;
use crate::inbound::route::route;
use crate::metrics::{self, GlobalCounter};
use crate::pg::commit_wake;
use crate::pg::thread_wake::Waker;
use bounded_http::{Limits, Promise, Quick, Reason, Request, Response, SourceLimits, Tls};
use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};
use whatsapp_cloud::signature;
use whatsapp_cloud::webhook::{self, HandshakeError, ParseError, Payload};

/// Webhook URLs are `<public_url>/webhook/<channel name>`.
pub const PATH_PREFIX: &str = "/webhook/";

/// How long a request for a channel changed a moment ago waits for the main thread to read
/// the change (it is woken at the change's COMMIT and reads it in about a millisecond).
const CATCH_UP: Duration = Duration::from_millis(500);

/// How long a request waits for the main thread to store it before it gets a 503.
const STORE_TIMEOUT: Duration = Duration::from_secs(60);

/// Bodies up to this size are checked and parsed on the connection's own thread (about 100 µs
/// for the largest: a 100-message webhook is 25 KB); larger ones (history chunks, say) on the
/// blocking pool, so that one of them never holds up the other connections of that thread.
const QUICK_BODY_BYTES: usize = 32 << 10;

/// What the main thread shares with the HTTP threads.
#[derive(Default)]
pub struct Shared {
    channels: RwLock<HashMap<String, Arc<ChannelCredentials>>>,
    /// The generation of the channels (see [`commit_wake::channels_generation`]) that `channels` holds
    /// (read without a lock on every request), with a condition variable the main thread
    /// signals after each reload.
    loaded_generation: AtomicU64,
    reload_lock: Mutex<()>,
    reloaded: Condvar,
    /// False while the extension is not created in the database: requests get a 503.
    installed: AtomicBool,
    pub max_body_bytes: Arc<AtomicUsize>,
    /// What new connections speak: plain HTTP or TLS with the certificate installed last.
    pub tls: Arc<Tls>,
    /// The caps per client address and the allow-list, as last (re)loaded.
    pub sources: Arc<SourceLimits>,
    pub throttle: Throttle,
}

impl Shared {
    /// Installs the channels read at `generation` (read before the table was).
    pub fn set_channels(&self, installed: bool, channels: Vec<ChannelCredentials>, generation: u64) {
        let map = channels.into_iter().map(|c| (c.name.clone(), Arc::new(c))).collect();
        *self.channels.write().unwrap_or_else(|p| p.into_inner()) = map;
        self.installed.store(installed, Ordering::Release);
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.loaded_generation.store(generation, Ordering::Release);
        self.reloaded.notify_all();
    }

    /// If a change to the channels has committed that the main thread has not read yet, waits
    /// (at most [`CATCH_UP`]) until it has, so that every request sees what was committed
    /// before it arrived: a channel added, a secret rotated or a channel removed a moment ago.
    /// Only a real change waits; otherwise this is two atomic loads, so a flood of requests for
    /// unknown channels or with bad signatures costs nothing here.
    pub fn catch_up(&self) {
        if !self.behind() {
            return;
        }
        let committed = commit_wake::channels_generation();
        let guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .reloaded
            .wait_timeout_while(guard, CATCH_UP, |_| self.loaded_generation.load(Ordering::Acquire) < committed);
    }

    /// Whether a change to the channels has committed that the main thread has not read yet.
    fn behind(&self) -> bool {
        self.loaded_generation.load(Ordering::Acquire) < commit_wake::channels_generation()
    }

    pub fn channel(&self, name: &str) -> Option<Arc<ChannelCredentials>> {
        self.channels.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// The channel a change is for (see [`route`]).
    pub fn route(&self, from: &ChannelCredentials, phone_number_id: Option<&str>) -> Option<i64> {
        route(self.channels.read().unwrap_or_else(|p| p.into_inner()).values().map(Arc::as_ref), from, phone_number_id)
    }
}

/// A POST whose signature checked out, parsed (or not) off the main thread.
pub struct Verified {
    pub channel: Arc<ChannelCredentials>,
    pub body: Vec<u8>,
    pub payload: Result<Payload, ParseError>,
    /// The headers worth keeping with the event (signature, content type, user agent).
    pub headers: serde_json::Value,
}

/// Headers kept with each stored event: enough to re-check the signature and to see who sent it.
const KEPT_HEADERS: [&str; 4] = ["X-Hub-Signature-256", "Content-Type", "User-Agent", "X-Forwarded-For"];

/// Work for the main thread.
pub enum Job {
    /// Store this and answer (keep the promise) whether it committed.
    Store(Verified, Promise<StoreOutcome>),
    /// A line for the server log, and perhaps a count in `wa_channel_counters`.
    Report(Report),
}

/// What became of a POST handed to the main thread.
#[derive(Debug)]
pub enum StoreOutcome {
    /// Committed: answer 200.
    Committed,
    /// Not stored, for a reason that may pass (a deadlock, say): 500, Meta redelivers.
    Failed(String),
    /// Its batch's transaction did not commit: 503, Meta redelivers.
    NotCommitted(String),
}

pub struct Report {
    pub level: LogLevel,
    pub line: String,
    pub counter: Option<Counter>,
}

/// `n` more of `kind` for a channel (`detail`: the likely cause, shown in wa_channel_health).
pub struct Counter {
    pub channel_id: i64,
    pub kind: CounterKind,
    pub detail: Option<String>,
    pub n: i64,
}

#[derive(Debug, Clone, Copy)]
pub enum LogLevel {
    Log,
    Warning,
}

/// A request must arrive within these: its head within [`HEAD_TIMEOUT`] of the connection
/// starting to wait for it (which also closes idle keep-alive connections), its body within
/// [`BODY_TIMEOUT`] after. Meta sends each webhook at once; only a stalled or hostile client
/// comes near them.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of all webhook bodies held at once, from their first byte until stored: a POST that
/// does not fit is answered 503 (Meta redelivers). Meta's payloads are kilobytes (at most
/// 3 MB), so this is thousands of them, and it bounds the memory strangers can make the
/// listener hold before their signature is checked.
pub const BODY_BUDGET: usize = 64 << 20;

/// Which POSTs a listener worker takes from its siblings and offers to them (see
/// [`super::handover`]); none with one worker, or `whatsapp_channel.listener_handover = off`.
pub struct Handover {
    pub listen_address: String,
    pub take: Option<Direction>,
    pub offer: Option<Direction>,
}

/// Serves webhooks on `listener` (bound by the main thread) with up to `max_connections` open
/// at once. Returns the receiving end of the jobs for the main thread, which `waker` wakes
/// whenever it sends one.
pub fn start(
    listener: TcpListener,
    shared: Arc<Shared>,
    waker: Waker,
    queue: usize,
    max_connections: usize,
    handover: Handover,
) -> std::io::Result<Receiver<Job>> {
    let (jobs, receiver) = sync_channel(queue);
    let Handover { listen_address, take, offer } = handover;
    if let Some(direction) = take
        && let Err(e) = super::handover::take(&listen_address, direction, shared.clone(), jobs.clone(), waker.clone())
    {
        let (which, then) = match direction {
            Direction::Gather => ("small POSTs", "the worker that receives one stores it"),
            Direction::Spread => ("large POSTs", "the first listener worker stores them all"),
        };
        let line =
            format!("{then}: cannot take {which} on the handover socket ({e}); another process may hold its name");
        send_report(&jobs, &waker, Report { level: LogLevel::Warning, line, counter: None });
    }
    let handover = offer.map(|direction| {
        Arc::new(super::handover::Sender::new(&listen_address, direction, jobs.clone(), waker.clone()))
    });
    let limits = Limits {
        max_connections,
        head_timeout: HEAD_TIMEOUT,
        body_timeout: BODY_TIMEOUT,
        max_body_bytes: shared.max_body_bytes.clone(),
        body_budget_bytes: BODY_BUDGET,
        sources: shared.sources.clone(),
        // Handlers that block: a large body's check and parse, or a wait for a channel change
        // to be read (a POST waiting for its COMMIT holds no thread).
        handler_threads: queue,
        ..Limits::default()
    };
    let tls = shared.tls.clone();
    bounded_http::serve(listener, limits, tls, Arc::new(Handler { shared, jobs, waker, handover }))?;
    Ok(receiver)
}

#[derive(Clone)]
struct Handler {
    shared: Arc<Shared>,
    jobs: SyncSender<Job>,
    waker: Waker,
    handover: Option<Arc<super::handover::Sender>>,
}

impl bounded_http::Handler for Handler {
    /// On the connection's thread, unless it would block: see the module's docs.
    fn quick(&self, request: Request) -> Result<Quick, Request> {
        if self.shared.behind() || request.body.len() > QUICK_BODY_BYTES {
            return Err(request);
        }
        Ok(self.take(request))
    }

    fn handle(&self, request: Request) -> Response {
        // From what is committed: the main thread re-reads the channels at every change (see
        // pg::commit_wake); a request waits only while a change committed a moment ago is being read
        // (a channel added just before Meta's handshake, a secret rotated before the next POST).
        self.shared.catch_up();
        match self.take(request) {
            Quick::Now(response) => response,
            Quick::Later(later) => later.wait(),
        }
    }

    fn refused(&self, reason: Reason, why: &str) {
        let counter = match reason {
            Reason::BadRequest => GlobalCounter::Refused400,
            Reason::Timeout => GlobalCounter::Refused408,
            Reason::TooLarge => GlobalCounter::Refused413,
            Reason::Busy => GlobalCounter::Refused503,
            Reason::Closed => GlobalCounter::Closed,
            Reason::SourceConnections => GlobalCounter::RefusedSourceConnections,
            Reason::SourceBytes => GlobalCounter::RefusedSourceBytes,
            Reason::SourceNotAllowed => GlobalCounter::RefusedSourceNotAllowed,
        };
        metrics::add_global(counter);
        let line = match reason.status() {
            0 => format!("webhook connection closed: {why}"),
            status => format!("webhook request answered {status}: {why}"),
        };
        self.report(LogLevel::Warning, line, None);
    }
}

impl Handler {
    /// Routes a request the channels are current for (see [`Shared::catch_up`]), and answers it
    /// now, or later for a POST handed to the main thread.
    fn take(&self, request: Request) -> Quick {
        let Some(name) = request.path().strip_prefix(PATH_PREFIX).filter(|n| !n.is_empty() && !n.contains('/')) else {
            return Quick::Now(Response::text(404, "Not found: webhook URLs end in /webhook/<channel>"));
        };
        let Some(channel) = self.shared.channel(name) else {
            if !self.shared.installed.load(Ordering::Acquire) {
                return Quick::Now(Response::text(
                    503,
                    "whatsapp_channel is not installed in whatsapp_channel.database yet",
                ));
            }
            metrics::add_global(GlobalCounter::UnknownChannel);
            return Quick::Now(Response::text(404, "Unknown channel"));
        };
        match request.method.as_str() {
            "GET" => Quick::Now(self.handshake(&channel, request.query())),
            "POST" => {
                let header = request.header(signature::HEADER).map(str::to_string);
                let kept: serde_json::Map<String, serde_json::Value> = KEPT_HEADERS
                    .iter()
                    .filter_map(|name| request.header(name).map(|v| (name.to_ascii_lowercase(), v.into())))
                    .collect();
                self.post(channel, request.body, header.as_deref(), serde_json::Value::Object(kept))
            }
            _ => Quick::Now(Response::text(405, "Method not allowed: Meta sends GET (verification) and POST (events)")),
        }
    }

    /// Hands a job to the main thread without blocking; `Err` when its queue is full.
    fn send(&self, job: Job) -> Result<(), TrySendError<Job>> {
        self.jobs.try_send(job)?;
        self.waker.wake();
        Ok(())
    }

    fn handshake(&self, channel: &ChannelCredentials, query: &str) -> Response {
        match webhook::verify_subscription(query, channel.verify_token.expose()) {
            Ok(challenge) => {
                let line = format!("webhook verified by Meta for channel '{}'", channel.name);
                self.report(LogLevel::Log, line, Some((channel, CounterKind::Verified, None)));
                Response::text(200, challenge)
            }
            Err(HandshakeError::TokenMismatch) => {
                let line = format!(
                    "webhook verification failed: verify token does not match the one set for channel '{}'. \
                     Enter the same verify_token in Meta's webhook settings as in wa_add_channel()",
                    channel.name
                );
                let cause = "verify token does not match the one set for the channel";
                self.report(LogLevel::Warning, line, Some((channel, CounterKind::VerifyTokenMismatch, Some(cause))));
                Response::text(403, "Verify token mismatch")
            }
            Err(HandshakeError::NotSubscribe) => Response::text(403, "Expected hub.mode=subscribe"),
            Err(HandshakeError::NoChallenge) => Response::text(403, "Missing hub.challenge"),
            Err(HandshakeError::BadChallenge) => {
                Response::text(403, "hub.challenge must be digits and URL-safe characters, at most 64")
            }
        }
    }

    fn post(
        &self,
        channel: Arc<ChannelCredentials>,
        body: Vec<u8>,
        header: Option<&str>,
        headers: serde_json::Value,
    ) -> Quick {
        if let Err(mismatch) = signature::verify(channel.app_secret.expose().as_bytes(), &body, header) {
            let line = format!(
                "webhook POST for channel '{}' refused: Signature mismatch. Likely cause: {}",
                channel.name,
                mismatch.likely_cause()
            );
            self.report(
                LogLevel::Warning,
                line,
                Some((&channel, CounterKind::SignatureMismatch, Some(mismatch.likely_cause()))),
            );
            return Quick::Now(Response::text(401, "Signature mismatch"));
        }
        // Parsed here, off the thread that writes to Postgres.
        let payload = webhook::parse(&body);
        let handler = self.clone();
        let (promise, later) = bounded_http::later(STORE_TIMEOUT, move |outcome| handler.answer(outcome));
        let mut job = (Verified { channel, body, payload, headers }, promise);
        if let Some(handover) = &self.handover {
            match handover.offer(job.0, job.1) {
                Ok(()) => return Quick::Later(later),
                Err(back) => job = back,
            }
        }
        if let Err(e) = self.send(Job::Store(job.0, job.1)) {
            let reason = match e {
                TrySendError::Full(_) => "the listener is overloaded",
                TrySendError::Disconnected(_) => "the listener is restarting",
            };
            self.report(
                LogLevel::Warning,
                format!("webhook POST answered 503: {reason}; Meta will redeliver it"),
                None,
            );
            metrics::add_global(GlobalCounter::Refused503);
            return Quick::Now(Response::text(503, "Busy, retry later"));
        }
        Quick::Later(later)
    }

    /// The answer to a POST from what the main thread did with it (`None`: nothing within
    /// [`STORE_TIMEOUT`], or the worker went away).
    fn answer(&self, outcome: Option<StoreOutcome>) -> Response {
        match outcome {
            Some(StoreOutcome::Committed) => Response::text(200, "OK"),
            Some(StoreOutcome::NotCommitted(reason)) => {
                let line = format!(
                    "webhook POST answered 503: its transaction did not commit ({reason}); Meta will redeliver it"
                );
                self.report(LogLevel::Warning, line, None);
                Response::text(503, "Could not commit the event; it will be redelivered")
            }
            Some(StoreOutcome::Failed(reason)) => {
                let line = format!("webhook POST could not be stored, answered 500 so Meta redelivers: {reason}");
                self.report(LogLevel::Warning, line, None);
                Response::text(500, "Could not store the event; it will be redelivered")
            }
            None => Response::text(503, "Timed out storing the event; it will be redelivered"),
        }
    }

    /// Sends a log line (and a count for the channel) to the main thread. Warnings are rate
    /// limited per kind and channel (see [`Throttle`]), so a flood of bad requests can neither
    /// flood the server log nor fill the queue that Meta's POSTs go through; what is held back
    /// is counted in the next report. If the queue is full the line goes to stderr.
    fn report(&self, level: LogLevel, line: String, counter: Option<(&ChannelCredentials, CounterKind, Option<&str>)>) {
        let key = (counter.map(|(c, ..)| c.id).unwrap_or(0), counter.map(|(_, kind, _)| kind));
        let n = match level {
            LogLevel::Log => 1,
            LogLevel::Warning => match self.shared.throttle.admit(key) {
                Some(n) => n,
                None => return,
            },
        };
        let line = if n > 1 {
            format!("{line} (and {} more like it in the last {}s)", n - 1, REPORT_EVERY.as_secs())
        } else {
            line
        };
        let counter =
            counter.map(|(c, kind, detail)| Counter { channel_id: c.id, kind, detail: detail.map(str::to_string), n });
        send_report(&self.jobs, &self.waker, Report { level, line, counter });
    }
}

/// Hands a log line to the main thread, which writes it to the server log (these threads may
/// not call `log!`); to stderr if its queue is full.
pub fn send_report(jobs: &SyncSender<Job>, waker: &Waker, report: Report) {
    match jobs.try_send(Job::Report(report)) {
        Ok(()) => waker.wake(),
        Err(TrySendError::Full(Job::Report(r))) => eprintln!("whatsapp_channel: {}", r.line),
        Err(_) => {}
    }
}

/// One warning per kind and channel per this interval; the rest are counted into the next.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Per (channel id, kind; none for a report that counts nothing): when the last report went
/// out, and how many were held back since.
/// The main thread drains the held-back counts into `wa_channel_counters` now and then, so
/// the counts stay exact even when no later report carries them.
#[derive(Default)]
pub struct Throttle(std::sync::Mutex<HashMap<ThrottleKey, (Instant, i64)>>);

/// A channel id and what its reports count (none for a report that counts nothing).
type ThrottleKey = (i64, Option<CounterKind>);

impl Throttle {
    /// `Some(n)`: report now, for `n` occurrences (this one and those held back); `None`: hold
    /// this one back.
    fn admit(&self, key: (i64, Option<CounterKind>)) -> Option<i64> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match map.get_mut(&key) {
            Some((last, held)) if now.duration_since(*last) < REPORT_EVERY => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                let n = *held + 1;
                (*last, *held) = (now, 0);
                Some(n)
            }
            None => {
                map.insert(key, (now, 0));
                Some(1)
            }
        }
    }

    /// The counts held back so far of reports that count something, reset to zero.
    pub fn take_held(&self) -> Vec<(i64, CounterKind, i64)> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.iter_mut()
            .filter(|(_, (_, held))| *held > 0)
            .filter_map(|(&(id, kind), (_, held))| Some((id, kind?, std::mem::take(held))))
            .collect()
    }
}
