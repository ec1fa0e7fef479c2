//! Listener workers pass POSTs between them so that small ones are stored in one worker's
//! batches, each batch's fixed cost shared by more POSTs, while large ones (backlogs) are still
//! stored by two workers at once.
//!
//! Why: a batch costs about 0.5 ms plus 78 µs a message, and two workers each storing what the
//! kernel spreads to them store half the POSTs each, in smaller batches. At 16 connections one
//! worker costs 265 µs of CPU a message against 424 for two, but one worker alone stores
//! 100-message POSTs at 0.64x the rate (docs/benchmarks/2026-12-07-issue-29-receiver-and-workers.md,
//! sections 5 and 5c). Gathering the second worker's small POSTs into the first's batches
//! still cost two more threads and a socket for each; steering every connection to the first
//! and spreading large POSTs cost 0.86x that CPU a message at 16 connections and 0.69x at 64,
//! with backlogs stored at the same rate (docs/benchmarks/2026-12-07-issue-29-steering.md).
//!
//! How, in two directions ([`Direction`]), each over an abstract Unix socket named after
//! `listen_address`:
//! - **Gather.** New connections go to the first worker (slot 0): its listening socket steers
//!   them all to itself ([`bounded_http::socket::steer_to_first`]), so it receives the small
//!   POSTs itself. When another worker has connections all the same (the first restarted, and
//!   the kernel gave its place to a sibling), that worker offers each verified POST of up to
//!   [`OFFER_MAX_BODY`] bytes to the first, while fewer than [`GATHER_MAX_PENDING`] of its POSTs
//!   are there; otherwise it stores them itself, all of them for a second ([`STORE_OWN_FOR`]).
//! - **Spread.** The first offers each POST larger than [`OFFER_MAX_BODY`] to the second
//!   worker (slot 1), while fewer than [`SPREAD_MAX_PENDING`] are there, and stores the rest
//!   itself: under a backlog both store at once.
//!
//! The worker that takes a POST queues it as its own and replies after its batch's COMMIT. Only
//! HTTP-side threads take part: no Postgres call.
//!
//! The guarantees hold: a reply of `Committed` is the taker's own "after COMMIT", and a POST
//! offered but never answered (the taker went away) is answered 503, so Meta sends it again
//! and the `(channel_id, wamid)` key stores it once even if the taker did commit it. Any local
//! process can reach an abstract socket or take its name first, so each side checks that the
//! other runs as the server's own user (`SO_PEERCRED`), and the taker checks each POST's
//! signature again with the channel's secret.
//! `whatsapp_channel.listener_handover = off` turns both off, and the steering: the kernel
//! then spreads connections over the workers by hash, and each stores what it receives.

use super::http::{Job, LogLevel, Report, Shared, StoreOutcome, Verified};
use crate::metrics::{self, GlobalCounter};
use crate::pg::thread_wake::Waker;
use bounded_http::Promise;
use bounded_http::handover::{self, Offer, Outcome, Reply};
use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Small POSTs a worker has with the first at once; beyond, it stores them itself. At 16
/// connections a second worker holds up to 16, so all of them go to the first: with 8, a
/// second worker that the kernel gave 9 to 12 connections stored the rest in batches of one to
/// four, and cost more than no handover at all (446 against 432 µs a message, 6 rounds).
pub const GATHER_MAX_PENDING: usize = 16;

/// Large POSTs the first has with the second at once; beyond, it stores them itself. Two keep
/// the second's main thread busy (one stored while the next waits) and leave the rest to the
/// first's.
pub const SPREAD_MAX_PENDING: usize = 2;

/// Largest body gathered, about ten messages; larger ones are spread. A POST of more messages
/// shares its batch's fixed cost (about six messages' worth) well enough alone, and such POSTs
/// come in backlogs, which two workers store 1.56 times as fast as one: with 100-message POSTs
/// (25 kB) gathered too, the seed of `bench/scale.sh` fell to 8,781 msg/s (15,880 without),
/// the first worker's main thread storing most of them.
pub const OFFER_MAX_BODY: usize = 4 << 10;

/// A worker that had [`GATHER_MAX_PENDING`] POSTs with the first stores its own for this long:
/// the load is then more than the first takes from it, its own batches are not small, and the
/// first's main thread is the one to spare. Then it offers again. (A rule on its own last
/// batch's size, tried first, could stay off for good at 16 connections after a burst: its own
/// batches there hold four or five POSTs. Flipping on again after any batch under 8 cost 1.09x
/// main's CPU at 64 connections.)
const STORE_OWN_FOR: Duration = Duration::from_secs(1);

/// What a taker holds of all senders at once before it declines: a guard against a sibling
/// that does not keep to its direction's pending bound.
const TAKE_MAX_HELD: usize = 1024;

/// Connections a taker takes at once: one per sibling, and some to spare.
const TAKE_MAX_CONNECTIONS: usize = 4 * crate::pg::commit_wake::MAX_LISTENERS;

/// How long a sender waits before it tries to connect again after a failure: the taker may be
/// restarting, and a POST should not pay a refused connection each time.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// A write to the taker that takes longer than this ends the link: its POSTs are then
/// answered 503, and the next ones stored here.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Which POSTs go where (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Small POSTs, from any other worker to the first.
    Gather,
    /// Large POSTs, from the first to the second.
    Spread,
}

impl Direction {
    /// What the worker in `slot` (of more than one, handing over) takes and offers.
    pub fn roles(slot: usize) -> (Option<Direction>, Option<Direction>) {
        match slot {
            0 => (Some(Direction::Gather), Some(Direction::Spread)),
            1 => (Some(Direction::Spread), Some(Direction::Gather)),
            _ => (None, Some(Direction::Gather)),
        }
    }

    fn socket_name(self, listen_address: &str) -> std::io::Result<SocketAddr> {
        let kind = match self {
            Direction::Gather => "",
            Direction::Spread => "large-",
        };
        SocketAddr::from_abstract_name(format!("whatsapp_channel-handover-{kind}{listen_address}").as_bytes())
    }

    /// Whether a body of `len` bytes goes this way.
    fn carries(self, len: usize) -> bool {
        match self {
            Direction::Gather => len <= OFFER_MAX_BODY,
            Direction::Spread => len > OFFER_MAX_BODY,
        }
    }

    /// The largest body a taker reads in this direction: larger frames end the connection.
    fn max_body(self, shared: &Shared) -> usize {
        match self {
            Direction::Gather => OFFER_MAX_BODY,
            Direction::Spread => shared.max_body_bytes.load(Ordering::Relaxed),
        }
    }

    fn max_pending(self) -> usize {
        match self {
            Direction::Gather => GATHER_MAX_PENDING,
            Direction::Spread => SPREAD_MAX_PENDING,
        }
    }

    /// How long the sender stores its own after it found the taker full.
    fn store_own_for(self) -> Option<Duration> {
        match self {
            Direction::Gather => Some(STORE_OWN_FOR),
            // (The first stores what the second cannot take anyway: the next one may go.)
            Direction::Spread => None,
        }
    }
}

/// Takes POSTs handed over in `direction` and queues them as this worker's own. An error means
/// the socket's name is taken (another cluster on the same address, or a squatter): the
/// workers then store those POSTs where they arrive, as without the handover.
pub fn take(
    listen_address: &str,
    direction: Direction,
    shared: Arc<Shared>,
    jobs: SyncSender<Job>,
    waker: Waker,
) -> std::io::Result<()> {
    let listener = UnixListener::bind_addr(&direction.socket_name(listen_address)?)?;
    let taker =
        Arc::new(Taker { direction, shared, jobs, waker, held: AtomicUsize::new(0), connections: AtomicUsize::new(0) });
    handover::spawn_quiet("handover-accept", move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else {
                // Out of file descriptors, say: pause rather than spin on the same error.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            if !taker.admit(&conn) {
                continue;
            }
            let this = taker.clone();
            let spawned = handover::spawn_quiet("handover-take", move || {
                this.take_from(conn);
                this.connections.fetch_sub(1, Ordering::AcqRel);
            });
            if spawned.is_err() {
                taker.connections.fetch_sub(1, Ordering::AcqRel);
            }
        }
    })?;
    Ok(())
}

struct Taker {
    direction: Direction,
    shared: Arc<Shared>,
    jobs: SyncSender<Job>,
    waker: Waker,
    /// Handed-over POSTs queued and not answered yet, of all senders.
    held: AtomicUsize,
    connections: AtomicUsize,
}

impl Taker {
    /// Whether to serve this connection: from the server's own user, within the cap.
    fn admit(&self, conn: &UnixStream) -> bool {
        match handover::peer_is_trusted(conn) {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                self.report("refused a connection to the handover socket from a process of another user".into());
                return false;
            }
        }
        if self.connections.fetch_add(1, Ordering::AcqRel) >= TAKE_MAX_CONNECTIONS {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn report(&self, line: String) {
        super::http::send_report(&self.jobs, &self.waker, Report { level: LogLevel::Warning, line, counter: None });
    }

    /// Reads offers until the sender closes; a second thread writes the replies in order as
    /// the POSTs' batches end.
    fn take_from(self: &Arc<Self>, conn: UnixStream) {
        let Ok(out) = conn.try_clone() else { return };
        let (queued, answers) = std::sync::mpsc::channel::<Waiting>();
        let taker = self.clone();
        let replier = handover::spawn_quiet("handover-reply", move || {
            let mut out = BufWriter::new(out);
            // Once the sender is gone, the rest is still waited for (so that `held` counts
            // only what is held), just not written.
            let mut gone = false;
            for waiting in answers {
                let reply = match waiting {
                    Waiting::Now(reply) => reply,
                    Waiting::Stored(seq, kept) => {
                        let stored = kept.wait();
                        taker.held.fetch_sub(1, Ordering::AcqRel);
                        let outcome = match stored {
                            Some(StoreOutcome::Committed) => Outcome::Committed,
                            Some(StoreOutcome::Failed(why)) => Outcome::Failed(why),
                            Some(StoreOutcome::NotCommitted(why)) => Outcome::NotCommitted(why),
                            None => Outcome::NotCommitted("the listener worker it was handed to went away".into()),
                        };
                        Reply { seq, outcome }
                    }
                };
                if !gone && handover::write_reply(&mut out, &reply).and_then(|()| out.flush()).is_err() {
                    gone = true;
                }
            }
        });
        let Ok(replier) = replier else { return };
        let mut input = BufReader::new(conn);
        // A bad frame ends the connection: the sender then answers what it had here 503.
        let max_body = self.direction.max_body(&self.shared);
        while let Ok(offer) = handover::read_offer(&mut input, max_body) {
            if queued.send(self.take_offer(offer)).is_err() {
                break;
            }
        }
        drop(queued);
        let _ = replier.join();
    }

    fn take_offer(&self, offer: Offer) -> Waiting {
        let decline = Waiting::Now(Reply { seq: offer.seq, outcome: Outcome::Declined });
        // As a request does: from what is committed (a channel added a moment ago).
        self.shared.catch_up();
        let Some(channel) = self.shared.channel(&offer.channel) else { return decline };
        if self.held.fetch_add(1, Ordering::AcqRel) >= TAKE_MAX_HELD {
            self.held.fetch_sub(1, Ordering::AcqRel);
            return decline;
        }
        let headers: serde_json::Value = serde_json::from_slice(&offer.headers).unwrap_or(serde_json::Value::Null);
        // Checked again: what comes through the socket counts only with the channel's
        // signature, as over HTTP (about 2 µs for 1 kB).
        let signature = headers.get("x-hub-signature-256").and_then(|h| h.as_str());
        if whatsapp_cloud::signature::verify(channel.app_secret.expose().as_bytes(), &offer.body, signature).is_err() {
            self.held.fetch_sub(1, Ordering::AcqRel);
            let why = "Signature mismatch, checked again by the listener worker it was handed to".to_string();
            return Waiting::Now(Reply { seq: offer.seq, outcome: Outcome::Refused(why) });
        }
        let payload = whatsapp_cloud::webhook::parse(&offer.body);
        let (promise, kept) = bounded_http::promise();
        let verified = Verified { channel, body: offer.body, payload, headers };
        match self.jobs.try_send(Job::Store(verified, promise)) {
            Ok(()) => {
                self.waker.wake();
                Waiting::Stored(offer.seq, kept)
            }
            Err(_) => {
                self.held.fetch_sub(1, Ordering::AcqRel);
                decline
            }
        }
    }
}

/// A reply to write: at once, or when the POST's batch ends.
enum Waiting {
    Now(Reply),
    Stored(u64, bounded_http::Kept<StoreOutcome>),
}

/// Offers POSTs in one direction.
pub struct Sender {
    listen_address: String,
    direction: Direction,
    link: Mutex<Link>,
    /// Until when this worker stores its own POSTs (see [`STORE_OWN_FOR`]).
    store_own_until: Mutex<Option<Instant>>,
    seq: AtomicU64,
    jobs: SyncSender<Job>,
    waker: Waker,
}

/// The connection to the taker, if any, and when the last attempt failed.
#[derive(Default)]
struct Link {
    open: Option<(UnixStream, Arc<Mutex<Pending>>)>,
    failed_at: Option<Instant>,
}

/// The POSTs with the taker on one connection, by sequence number. Closed when the connection
/// ends: what is left is answered 503, and nothing more is added.
#[derive(Default)]
struct Pending {
    closed: bool,
    posts: HashMap<u64, (Verified, Promise<StoreOutcome>)>,
}

impl Pending {
    fn add(&mut self, seq: u64, verified: Verified, promise: Promise<StoreOutcome>) {
        self.posts.insert(seq, (verified, promise));
    }

    fn take(&mut self, seq: u64) -> Option<(Verified, Promise<StoreOutcome>)> {
        self.posts.remove(&seq)
    }

    /// Closes it, and returns the promises of what is left.
    fn close(&mut self) -> Vec<Promise<StoreOutcome>> {
        self.closed = true;
        self.posts.drain().map(|(_, (_, promise))| promise).collect()
    }
}

impl Sender {
    pub fn new(listen_address: &str, direction: Direction, jobs: SyncSender<Job>, waker: Waker) -> Sender {
        Sender {
            listen_address: listen_address.to_string(),
            direction,
            link: Mutex::default(),
            store_own_until: Mutex::default(),
            seq: AtomicU64::new(0),
            jobs,
            waker,
        }
    }

    /// Hands `verified` to the taker, whose reply keeps `promise`; gives both back when this
    /// worker should store it itself.
    pub fn offer(
        &self,
        verified: Verified,
        promise: Promise<StoreOutcome>,
    ) -> Result<(), (Verified, Promise<StoreOutcome>)> {
        if !self.direction.carries(verified.body.len()) {
            return Err((verified, promise));
        }
        if self.storing_own() {
            metrics::add_global(GlobalCounter::HandoverKept);
            return Err((verified, promise));
        }
        let mut link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        if !self.connect_if_need_be(&mut link) {
            metrics::add_global(GlobalCounter::HandoverKept);
            return Err((verified, promise));
        }
        let (stream, pending) = link.open.as_ref().expect("connected above");
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let frame = {
            let mut pending = pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.closed || pending.posts.len() >= self.direction.max_pending() {
                let full = !pending.closed;
                drop(pending);
                if let (true, Some(own_for)) = (full, self.direction.store_own_for()) {
                    *self.store_own_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + own_for);
                }
                metrics::add_global(GlobalCounter::HandoverKept);
                return Err((verified, promise));
            }
            // (Made only now that it is sure to go: a large body is copied into it.)
            let frame = handover::encode_offer(&Offer {
                seq,
                channel: verified.channel.name.clone(),
                body: verified.body.clone(),
                headers: verified.headers.to_string().into_bytes(),
            });
            pending.add(seq, verified, promise);
            frame
        };
        let mut writer = stream;
        if writer.write_all(&frame).is_err() {
            // The taker never read this frame whole, so it cannot store it: stored here. What
            // else it holds is answered 503 by the reader, which the shutdown ends.
            let _ = stream.shutdown(std::net::Shutdown::Both);
            let back = pending.lock().unwrap_or_else(|p| p.into_inner()).take(seq);
            link.open = None;
            if let Some(back) = back {
                metrics::add_global(GlobalCounter::HandoverKept);
                return Err(back);
            }
        }
        Ok(())
    }

    fn storing_own(&self) -> bool {
        let mut until = self.store_own_until.lock().unwrap_or_else(|p| p.into_inner());
        match *until {
            Some(at) if Instant::now() < at => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    /// Whether there is an open connection to the taker, made if need be (at most one attempt
    /// a second).
    fn connect_if_need_be(&self, link: &mut Link) -> bool {
        if let Some((_, pending)) = &link.open {
            if !pending.lock().unwrap_or_else(|p| p.into_inner()).closed {
                return true;
            }
            link.open = None;
        }
        if link.failed_at.is_some_and(|at| at.elapsed() < RECONNECT_AFTER) {
            return false;
        }
        match self.connect() {
            Ok(open) => {
                link.failed_at = None;
                link.open = Some(open);
                true
            }
            Err(_) => {
                link.failed_at = Some(Instant::now());
                false
            }
        }
    }

    fn connect(&self) -> std::io::Result<(UnixStream, Arc<Mutex<Pending>>)> {
        let stream = UnixStream::connect_addr(&self.direction.socket_name(&self.listen_address)?)?;
        if !handover::peer_is_trusted(&stream)? {
            return Err(std::io::Error::other("the handover socket is held by a process of another user"));
        }
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let pending: Arc<Mutex<Pending>> = Arc::default();
        let input = stream.try_clone()?;
        let (jobs, waker, on_reply) = (self.jobs.clone(), self.waker.clone(), pending.clone());
        handover::spawn_quiet("handover-replies", move || read_replies(input, &on_reply, &jobs, &waker))?;
        Ok((stream, pending))
    }
}

/// Keeps the promises of what the taker answers; when the connection ends, answers the rest
/// 503.
fn read_replies(input: UnixStream, pending: &Mutex<Pending>, jobs: &SyncSender<Job>, waker: &Waker) {
    let mut input = BufReader::new(input);
    while let Ok(Reply { seq, outcome }) = handover::read_reply(&mut input) {
        let Some((verified, promise)) = pending.lock().unwrap_or_else(|p| p.into_inner()).take(seq) else {
            continue;
        };
        match outcome {
            Outcome::Committed => promise.keep(StoreOutcome::Committed),
            Outcome::Failed(why) | Outcome::Refused(why) => promise.keep(StoreOutcome::Failed(why)),
            Outcome::NotCommitted(why) => promise.keep(StoreOutcome::NotCommitted(why)),
            Outcome::Declined => {
                metrics::add_global(GlobalCounter::HandoverKept);
                match jobs.try_send(Job::Store(verified, promise)) {
                    Ok(()) => waker.wake(),
                    Err(
                        TrySendError::Full(Job::Store(_, promise)) | TrySendError::Disconnected(Job::Store(_, promise)),
                    ) => promise.keep(StoreOutcome::NotCommitted("the listener is overloaded".into())),
                    Err(_) => {}
                }
                continue;
            }
        }
        metrics::add_global(GlobalCounter::HandoverTaken);
    }
    // The taker went away, or its stream broke: what it held may or may not have committed.
    // 503: Meta sends it again, and the (channel_id, wamid) key stores it once.
    let lost = pending.lock().unwrap_or_else(|p| p.into_inner()).close();
    metrics::add_global_n(GlobalCounter::HandoverLost, lost.len() as u64);
    for promise in lost {
        promise.keep(StoreOutcome::NotCommitted("the listener worker it was handed to went away".into()));
    }
}
