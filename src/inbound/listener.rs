//! The webhook listener worker's main thread: the only thread that touches Postgres. It binds
//! the socket, starts the HTTP threads ([`crate::inbound::http`]), and then stores what they
//! hand over. Requests that arrive together share one transaction (group commit), each in its
//! own subtransaction; every request is answered only after that transaction has committed.

use super::handover::Direction;
use super::http::{self, Counter, Job, LogLevel, Shared, StoreOutcome, Verified};
use super::store::{self, NewEvent};
use super::write_path::{self, Batch};
use super::{CounterKind, Counts};
use crate::channels::store::load_channels;
use crate::metrics::{self, Histogram};
use crate::pg::extension::use_extension_schema;
use crate::pg::thread_wake::{self, Wakeups};
use crate::pg::{activity, commit_wake, guc, subtransaction, transaction, worker};
use crate::{debug1, log, warning};
use bounded_http::socket::{self, Sharing};
use bounded_http::{AllowList, Promise, SourceLimits, Tls, capacity};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime};

/// Requests waiting for the main thread; more get a 503 (Meta redelivers).
const QUEUE: usize = 1024;
/// Most requests stored in one transaction.
const BATCH: usize = 256;
/// Channels are re-read at every committed change (see [`commit_wake::listener_at_commit`]), and this
/// often anyway, as a safety net (a change made while the library was not loaded).
const RELOAD_EVERY: Duration = Duration::from_secs(5);
/// How often the counts are written into `wa_channel_counters` while there are any. Per batch,
/// the counter rows were the listener's hottest rows: each batch's update of (channel, stored)
/// waited for the other listener worker's COMMIT, and the update itself cost a quarter of a
/// batch's fixed cost (BENCHMARKS.md, 3 December). The metrics count at once; what a crash
/// loses is at most this much of the table's counts.
const WRITE_COUNTS_EVERY: Duration = Duration::from_secs(1);

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn wa_webhook_listener_main(arg: pg_sys::Datum) {
    let Some(database) = worker::start("the webhook listener") else { return };
    let slot = arg.value();
    let address = guc::listen_address();
    // Bound here, on the main thread, so a bad address fails the worker at once and visibly.
    let socket = bind(&address, slot).unwrap_or_else(|e| {
        config_error(
            format!("cannot listen on {address}: {e}"),
            "Set whatsapp_channel.listen_address to a free host:port and restart the server.",
        )
    });
    commit_wake::register_listener(slot);
    let shared = Arc::new(Shared::default());
    shared.max_body_bytes.store(guc::max_body_bytes(), Ordering::Relaxed);
    let mut tls = TlsFiles::default();
    if let Err(e) = tls.reload(&shared.tls) {
        config_error(
            format!("cannot serve https: {e}"),
            "Fix whatsapp_channel.tls_cert_file / tls_key_file (or unset both for plain HTTP) and reload.",
        );
    }
    if let Err(e) = apply_source_settings(&shared.sources) {
        config_error(
            format!("cannot tell which clients may connect: {e}"),
            "Fix whatsapp_channel.allowed_sources (networks such as 192.0.2.0/24, 2001:db8::/32, comma-separated; \
             empty allows any) and reload.",
        );
    }
    let (waker, mut wakeups) = thread_wake::pair();
    let cap = connection_cap();
    // The channels are read before the first request is accepted, so that nothing is answered
    // 503 ("not installed yet") just because the worker has only just started.
    let mut listener = Listener {
        shared: shared.clone(),
        last_reload: None,
        generation: 0,
        installed: false,
        unwritten: Counts::default(),
        counts_written: Instant::now(),
    };
    listener.reload();
    let workers = guc::listener_workers();
    let (take, offer) = if handing_over(workers) { Direction::roles(slot) } else { (None, None) };
    let handover = http::Handover { listen_address: address.clone(), take, offer };
    let jobs = http::start(socket, shared.clone(), waker, QUEUE, cap.connections as usize, handover)
        .unwrap_or_else(|e| error!("whatsapp_channel: cannot start the webhook server: {e}"));
    log!(
        "whatsapp_channel: webhook listener{} on {}://{address}{}<channel>, database \"{database}\", \
         up to {} connections (open-files limit {} raised to {})",
        if workers > 1 { format!(" {} of {workers}", slot + 1) } else { String::new() },
        if shared.tls.current().is_some() { "https" } else { "http" },
        http::PATH_PREFIX,
        cap.connections,
        cap.open_files_before,
        cap.open_files
    );

    listener.serve(&jobs, &mut wakeups, &mut tls, &format!("waiting for webhooks on {address}"));
}

/// Ends the worker with a configuration error that says what to fix.
fn config_error(message: String, hint: &str) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_CONFIG_FILE_ERROR,
        format!("whatsapp_channel: {message}"),
        "wa_webhook_listener_main",
    )
    .set_hint(hint)
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// How many webhook connections this worker holds open at most, and the open-files limit.
struct ConnectionCap {
    connections: u64,
    open_files_before: u64,
    open_files: u64,
}

/// `whatsapp_channel.max_connections`, within what the open-files limit leaves after Postgres'
/// own files (raised first as far as the hard limit allows).
fn connection_cap() -> ConnectionCap {
    let open_files = capacity::raise_open_files_limit();
    let setting = guc::max_connections();
    let postgres_files = u64::try_from(unsafe { pg_sys::max_files_per_process }).unwrap_or(1000);
    let connections = capacity::connection_cap(setting, open_files.now, postgres_files);
    if connections < setting {
        warning!(
            "whatsapp_channel: webhook connections capped at {connections}, under whatsapp_channel.max_connections \
             ({setting}): the open-files limit is {} and Postgres may use {postgres_files} of them. Raise the server's \
             open-files limit (LimitNOFILE in its systemd unit, or ulimit -n) to allow more",
            open_files.now
        );
    }
    ConnectionCap { connections, open_files_before: open_files.before, open_files: open_files.now }
}

/// Binds the listening socket of the listener in `slot`. With several listener workers they
/// share the address (SO_REUSEPORT): the first to bind proves it free of anyone else, and the
/// others join it. Handing over, the first's socket steers every new connection to itself;
/// otherwise the kernel spreads them by hash.
fn bind(address: &str, slot: usize) -> std::io::Result<std::net::TcpListener> {
    if guc::listener_workers() == 1 {
        return socket::bind(address, Sharing::Alone);
    }
    if commit_wake::sibling_listening(slot) {
        return socket::bind(address, Sharing::Sibling);
    }
    if slot == 0 {
        let socket = socket::bind(address, Sharing::FirstOfSiblings)?;
        // Handing over, the first receives every connection, and spreads large POSTs itself.
        // Without the steering the handover still works, only at a higher cost.
        if handing_over(guc::listener_workers())
            && let Err(e) = socket::steer_to_first(&socket)
        {
            warning!(
                "whatsapp_channel: new webhook connections are spread over the listener workers by hash: cannot \
                 steer them to the first ({e})"
            );
        }
        return Ok(socket);
    }
    // The others wait for the first (a few seconds at most: it starts with them).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !commit_wake::sibling_listening(slot) {
        if Instant::now() > deadline || BackgroundWorker::sigterm_received() {
            return Err(std::io::Error::other("the first webhook listener did not start listening"));
        }
        BackgroundWorker::wait_latch(Some(Duration::from_millis(50)));
    }
    socket::bind(address, Sharing::Sibling)
}

/// Whether listener workers pass POSTs between them (see [`super::handover`]).
fn handing_over(workers: usize) -> bool {
    workers > 1 && guc::listener_handover()
}

/// Applies the caps per client address and the allow-list. A bad allow-list changes nothing and
/// is returned, naming the bad entry: at a reload the previous list stays (as a bad TLS file
/// keeps the previous certificate), and at start the listener stops rather than let any
/// address in.
fn apply_source_settings(sources: &SourceLimits) -> Result<(), String> {
    let (connections, bytes) = (guc::max_connections_per_source(), guc::max_body_bytes_per_source());
    sources.max_connections.store(connections, Ordering::Relaxed);
    sources.max_body_bytes.store(bytes, Ordering::Relaxed);
    if bytes != 0 && bytes < guc::max_body_bytes() {
        warning!(
            "whatsapp_channel: whatsapp_channel.max_body_bytes_per_source ({bytes} bytes) is under max_body_bytes ({}): a body \
             between the two is always answered 503. Raise it, or set 0 for no cap",
            guc::max_body_bytes()
        );
    }
    let list =
        AllowList::parse(&guc::allowed_sources()).map_err(|e| format!("whatsapp_channel.allowed_sources: {e}"))?;
    if *sources.allowed() != list {
        let networks: Vec<String> = list.networks().iter().map(ToString::to_string).collect();
        let from = if list.is_any() { "any address".to_string() } else { format!("only {}", networks.join(", ")) };
        sources.allow(list);
        log!("whatsapp_channel: webhook listener accepts connections from {from}");
    }
    Ok(())
}

/// The TLS files last loaded, as the settings named them and as they were on disk then.
#[derive(Default, PartialEq)]
struct TlsFiles(Option<[(PathBuf, Option<SystemTime>); 2]>);

impl TlsFiles {
    /// What `whatsapp_channel.tls_cert_file` and `tls_key_file` name now (`None`: plain HTTP).
    fn from_settings() -> Result<TlsFiles, String> {
        let (cert, key) = guc::tls_files();
        let stamp = |p: &str| (PathBuf::from(p), std::fs::metadata(p).and_then(|m| m.modified()).ok());
        match (cert.is_empty(), key.is_empty()) {
            (true, true) => Ok(TlsFiles(None)),
            (false, false) => Ok(TlsFiles(Some([stamp(&cert), stamp(&key)]))),
            _ => Err("set both whatsapp_channel.tls_cert_file and whatsapp_channel.tls_key_file, or neither".into()),
        }
    }

    /// Installs what the settings name if it changed (other names, or files renewed since),
    /// and says what changed; on error nothing changes and connections go on as before.
    fn reload(&mut self, tls: &Tls) -> Result<Option<String>, String> {
        let wanted = TlsFiles::from_settings()?;
        // `self` changes only together with what `tls` holds, so equal means installed.
        if *self == wanted {
            return Ok(None);
        }
        let change = match &wanted.0 {
            None => {
                tls.install(None);
                "speaks plain HTTP from now on (TLS files unset)".to_string()
            }
            Some([(cert, _), (key, _)]) => {
                tls.install(Some(bounded_http::load_tls(cert, key)?));
                format!("TLS certificate (re)loaded from {}", cert.display())
            }
        };
        *self = wanted;
        Ok(Some(change))
    }
}

struct Listener {
    shared: Arc<Shared>,
    last_reload: Option<Instant>,
    /// The channels' generation when they were last read.
    generation: u64,
    installed: bool,
    /// Counts committed (and published as metrics) but not yet written to `wa_channel_counters`.
    unwritten: Counts,
    counts_written: Instant,
}

impl Listener {
    /// Sleeps until a request thread hands over work (or a signal, or the next periodic reload),
    /// stores what came, and so on until SIGTERM. `idle` is what pg_stat_activity shows meanwhile.
    fn serve(&mut self, jobs: &Receiver<Job>, wakeups: &mut Wakeups, tls: &mut TlsFiles, idle: &str) {
        loop {
            // Not asleep while a channel change is unread: its latch may have been consumed by a
            // wait inside the last batch (a COMMIT waiting for a synchronous standby resets it).
            let sleep = if self.generation != commit_wake::channels_generation() {
                Duration::ZERO
            } else if !self.unwritten.is_empty() {
                WRITE_COUNTS_EVERY.saturating_sub(self.counts_written.elapsed())
            } else {
                RELOAD_EVERY
            };
            if !wakeups.wait(sleep) {
                break;
            }
            if worker::reload_if_asked() {
                self.reload_settings(tls);
            }
            if self.generation != commit_wake::channels_generation() {
                self.reload(); // a channel or secret changed: committed, so readable now
            }
            if self.last_reload.is_none_or(|t| t.elapsed() >= RELOAD_EVERY) {
                self.reload();
                self.count_held_back();
            }
            // Whatever arrived while the last batch was committing forms the next batch.
            loop {
                let batch: Vec<Job> = jobs.try_iter().take(BATCH).collect();
                if batch.is_empty() {
                    break;
                }
                self.run(batch);
            }
            if self.counts_written.elapsed() >= WRITE_COUNTS_EVERY {
                self.write_counts();
            }
            activity::idle(idle);
        }
        // Stopping: what was counted since the last write is written now.
        self.write_counts();
    }

    /// Writes the counts gathered since the last write into `wa_channel_counters`, in a
    /// transaction of their own (one a second at most). If it fails, they are kept for the
    /// next write.
    fn write_counts(&mut self) {
        self.counts_written = Instant::now();
        if self.unwritten.is_empty() {
            return;
        }
        let unwritten = &self.unwritten;
        let written = transaction::run(|| {
            if use_extension_schema() {
                unwritten.flush();
            }
        });
        match written {
            Ok(()) => self.unwritten = Counts::default(),
            Err(e) => warning!("whatsapp_channel: the webhook listener's counts are written again in a second: {e}"),
        }
    }

    /// Stores a batch of jobs in one transaction and answers each request after COMMIT.
    fn run(&mut self, batch: Vec<Job>) {
        let (stores, counters) = take_reports(batch);
        if stores.is_empty() && counters.is_empty() {
            return;
        }
        // An update for a number no channel has: perhaps one added a moment ago whose change
        // has not reached this worker yet. Make sure the table is current before routing;
        // only a number still unknown after that is kept raw and counted.
        if stores.iter().any(|(v, _)| has_unknown_number(&self.shared, v)) {
            self.reload();
        }
        if !stores.is_empty() {
            activity::busy(&format!("storing {} webhook POSTs", stores.len()));
        }
        let started = Instant::now();
        let posts: Vec<&Verified> = stores.iter().map(|(verified, _)| verified).collect();
        let installed = self.installed;
        let committed =
            transaction::run(|| store_batch(&self.shared, installed, &posts, &counters)).map(|(results, counts)| {
                counts.publish();
                self.unwritten.merge(counts);
                results
            });
        answer(stores, committed, started);
        unsafe { pg_sys::pgstat_report_stat(false) };
    }

    /// Applies changed settings: the body limit, the TLS files, the bounds per client address.
    fn reload_settings(&self, tls: &mut TlsFiles) {
        self.shared.max_body_bytes.store(guc::max_body_bytes(), Ordering::Relaxed);
        match tls.reload(&self.shared.tls) {
            Ok(Some(change)) => log!("whatsapp_channel: webhook listener {change}"),
            Ok(None) => {}
            Err(e) => warning!("whatsapp_channel: webhook listener keeps its previous TLS setting: {e}"),
        }
        if let Err(e) = apply_source_settings(&self.shared.sources) {
            warning!("whatsapp_channel: webhook listener keeps its previous allowed_sources: {e}");
        }
    }

    /// Counts the rejections whose log lines were held back (see the Throttle in inbound/http.rs).
    fn count_held_back(&mut self) {
        let held: Vec<_> = self.shared.throttle.take_held().into_iter().filter(|(id, ..)| *id != 0).collect();
        if held.is_empty() || !self.installed {
            return;
        }
        let mut counts = Counts::default();
        for (channel_id, kind, n) in &held {
            counts.add_n(*channel_id, *kind, None, *n);
        }
        counts.publish();
        self.unwritten.merge(counts);
    }

    fn reload(&mut self) {
        let started = Instant::now();
        // Read before the table: a change committed while reading moves it on again.
        self.generation = commit_wake::channels_generation();
        let loaded = BackgroundWorker::transaction(|| use_extension_schema().then(load_channels));
        if loaded.is_none() && self.installed {
            warning!("whatsapp_channel: the extension is no longer installed; webhooks are answered 503");
        }
        self.installed = loaded.is_some();
        let channels = loaded.unwrap_or_default();
        self.shared.set_channels(self.installed, channels, self.generation);
        self.last_reload = Some(started);
    }
}

/// The stores of a batch, with their promises; the reports are logged now, and their counts
/// returned to be written with the batch.
fn take_reports(batch: Vec<Job>) -> (Vec<(Verified, Promise<StoreOutcome>)>, Vec<Counter>) {
    let mut stores = Vec::new();
    let mut counters = Vec::new();
    for job in batch {
        match job {
            Job::Store(verified, reply) => stores.push((verified, reply)),
            Job::Report(report) => {
                match report.level {
                    LogLevel::Log => log!("whatsapp_channel: {}", report.line),
                    LogLevel::Warning => warning!("whatsapp_channel: {}", report.line),
                }
                counters.extend(report.counter);
            }
        }
    }
    (stores, counters)
}

/// What a batch's transaction stored: per POST, stored or why not; and what to count.
type BatchResult = (Vec<Result<(), String>>, Counts);

/// Stores a batch of POSTs in the current transaction: all of them in one subtransaction,
/// through the set-based write path; if anything in it fails, it rolls back and each POST is
/// stored alone (all its items at once, then item by item), so that a bad item costs only itself.
///
/// `installed`: whether the extension was there, at this library's version, at the last reload
/// of the channels, which put its schema on the search_path (see [`Listener::reload`]). Not
/// asked again per batch: that was one more statement on every batch's way (39 µs, measured),
/// and the schema changes only with a reload anyway, at start, at a channel change (the upgrade
/// scripts make one) or every 5 seconds. A DROP EXTENSION in between makes the batch's
/// statements fail: those POSTs are answered 500, and Meta sends them again.
fn store_batch(shared: &Shared, installed: bool, posts: &[&Verified], counters: &[Counter]) -> BatchResult {
    if !installed {
        return (posts.iter().map(|_| Err("the extension is not installed".to_string())).collect(), Counts::default());
    }
    let mut counts = Counts::default();
    for c in counters {
        counts.add_n(c.channel_id, c.kind, c.detail.as_deref(), c.n);
    }
    let mut results: Vec<Option<Result<(), String>>> = posts.iter().map(|_| None).collect();
    let together: Vec<usize> = (0..posts.len()).filter(|&i| fits_batch(shared, posts[i])).collect();
    if !together.is_empty() {
        let batch: Vec<&Verified> = together.iter().map(|&i| posts[i]).collect();
        let mut together_counts = Counts::default();
        match subtransaction::run(|| store_together(shared, &batch, &mut together_counts)) {
            Ok(()) => {
                counts.merge(together_counts);
                for &i in &together {
                    results[i] = Some(Ok(()));
                }
            }
            Err(e) => debug1!("whatsapp_channel: batch of {} stored one by one: {e}", batch.len()),
        }
    }
    for (i, verified) in posts.iter().enumerate() {
        if results[i].is_none() {
            let mut post_counts = Counts::default();
            let result = match subtransaction::run(|| store_post(shared, verified, &mut post_counts)) {
                // Kept, wholly or not (an incomplete POST is answered 500): its counts commit
                // with it.
                Ok(answer) => {
                    counts.merge(post_counts);
                    answer
                }
                Err(e) => Err(e),
            };
            results[i] = Some(result);
        }
    }
    (results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect(), counts)
}

/// Answers every request of a batch once its transaction has ended. Committed: now, and only
/// now, the senders may be told. If the COMMIT failed, nothing of the batch is stored: every
/// request of it is answered 503, and the worker goes on.
fn answer(
    stores: Vec<(Verified, Promise<StoreOutcome>)>,
    committed: Result<Vec<Result<(), String>>, String>,
    started: Instant,
) {
    let not_committed = match &committed {
        Err(e) => Some(format!("a batch of {} webhook POSTs did not commit, answered 503: {e}", stores.len())),
        Ok(_) => None,
    };
    let answers: Vec<StoreOutcome> = match committed {
        Ok(results) => {
            if !stores.is_empty() {
                metrics::observe(Histogram::BatchPosts, stores.len() as f64);
                metrics::observe(Histogram::CommitSeconds, started.elapsed().as_secs_f64());
            }
            results.into_iter().map(|r| r.map_or_else(StoreOutcome::Failed, |()| StoreOutcome::Committed)).collect()
        }
        Err(e) => stores.iter().map(|_| StoreOutcome::NotCommitted(e.clone())).collect(),
    };
    // Answered before anything is logged: a log call checks for interrupts, and with the
    // postmaster gone (see pg::role::commit_may_be_lost) it would end the worker first.
    for ((_, promise), answer) in stores.into_iter().zip(answers) {
        promise.keep(answer);
    }
    if let Some(line) = not_committed {
        warning!("whatsapp_channel: {line}");
    }
}

/// Whether a readable POST carries updates for a `phone_number_id` no known channel of its app has.
fn has_unknown_number(shared: &Shared, verified: &Verified) -> bool {
    let Ok(payload) = &verified.payload else { return false };
    payload
        .changes
        .iter()
        .any(|c| c.phone_number_id.is_some() && shared.route(&verified.channel, c.phone_number_id.as_deref()).is_none())
}

/// Whether a POST can join the batch of all POSTs stored together: a readable payload whose
/// changes all belong to known channels, with no refused item, nothing said about the business
/// (account, templates, errors, unknown fields: rare, and recorded per event) and no history
/// sync chunk (rare, large, and recorded per chunk: stored alone).
fn fits_batch(shared: &Shared, verified: &Verified) -> bool {
    let Ok(payload) = &verified.payload else { return false };
    payload.changes.iter().all(|c| {
        c.rejected.is_empty()
            && c.business.is_empty()
            && c.history_chunks.is_empty()
            && shared.route(&verified.channel, c.phone_number_id.as_deref()).is_some()
    })
}

/// Every POST's raw event, then all their messages and statuses through the one write path,
/// with no subtransaction per item (any error rolls back the lot, and each POST is stored
/// alone instead).
fn store_together(shared: &Shared, posts: &[&Verified], counts: &mut Counts) {
    fn payload_of<'a>(v: &&'a Verified) -> &'a whatsapp_cloud::webhook::Payload {
        match &v.payload {
            Ok(payload) => payload,
            Err(_) => unreachable!("checked by fits_batch"),
        }
    }
    let events: Vec<NewEvent> = posts
        .iter()
        .map(|v| NewEvent { channel_id: v.channel.id, body: &v.body, headers: &v.headers, payload: payload_of(v) })
        .collect();
    let event_ids = store::insert_payload_events(&events);
    let mut batch = Batch::default();
    for (verified, event_id) in posts.iter().zip(event_ids) {
        let channel = &verified.channel;
        let (items, _) = write_path::items(payload_of(verified), |pnid| shared.route(channel, pnid));
        for item in &items {
            batch.add(event_id, item);
        }
        counts.add(channel.id, CounterKind::Stored, None);
    }
    let (messages, statuses) = batch.store();
    counts.add_stored(messages, statuses);
}

/// One verified POST alone (see [`write_path::store_payload`]).
fn store_post(shared: &Shared, verified: &Verified, counts: &mut Counts) -> Result<(), String> {
    let channel = &verified.channel;
    let payload = match &verified.payload {
        Ok(payload) => payload,
        Err(e) => {
            // Signed by Meta but unreadable: kept for inspection and replay, answered 200 since
            // redelivering the same bytes cannot make them readable.
            store::insert_unreadable_event(channel.id, &verified.body, &verified.headers, &e.0);
            counts.add(channel.id, CounterKind::InvalidPayload, Some(&e.0));
            warning!("whatsapp_channel: signed webhook for channel '{}' is not a WhatsApp payload: {e}", channel.name);
            return Ok(());
        }
    };
    let event = NewEvent { channel_id: channel.id, body: &verified.body, headers: &verified.headers, payload };
    let event_id = store::insert_payload_events(&[event])[0];
    let stored = write_path::store_payload(channel.id, event_id, payload, |pnid| shared.route(channel, pnid));
    write_path::record_outcome(channel, event_id, &stored, counts);
    match stored.unstored.first() {
        // What was stored stays (it commits with the batch), and so does the event, marked
        // incomplete; the 500 makes Meta send the POST again.
        Some(first) => {
            Err(format!("{} item(s) not stored (webhook event {event_id}), the first: {first}", stored.unstored.len()))
        }
        None => Ok(()),
    }
}
