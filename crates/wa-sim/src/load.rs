//! An inbound load generator: many customers writing in at once, as Meta delivers them.
//!
//! `concurrency` client threads each hold one keep-alive connection to the webhook listener and
//! POST correctly signed webhooks back to back until the deadline, or until `max_messages`
//! messages are sent. Each POST carries `batch` items (one `messages[]` array with each
//! sender once in `contacts[]`, as Meta batches; statuses in a change of their own), each item
//! drawn from the `mix` (text only by default), and each message from a customer drawn from
//! the [`customers`](crate::customers) model: a pool of `senders` stable customers (`1555` +
//! 7 digits, "Customer i"), or, for `new_share` of the messages, a customer who never wrote.
//! Statuses are `delivered` / `read` for wamids that do not exist, to pool customers.
//!
//! A separate thread holds a `LISTEN wa_message` connection and timestamps every notification.
//! With a rate, the clients send that many POSTs per second in all instead (to measure latency
//! at a steady load, not at saturation). After the run the wamids that were sent are looked up
//! in `wa_messages` in batches of 10,000 (`channel_id = $1 AND wamid = ANY($2)`, served by the
//! `UNIQUE (channel_id, wamid)` index): the rows found are what was verified and committed, and
//! each row's id ties its notification to the POST that carried it, so POST -> NOTIFY latency
//! is the notification's arrival minus the moment the POST was sent, both on this process's
//! clock. Statuses are not messages: they are counted apart (in `wa_message_statuses`).
//!
//! Wamids are not kept: a POST remembers the numbers of its first message and status, and the
//! wamids (`wamid.LOAD.<run>.<thread>.<n>`, statuses `wamid.LOADST.…`) are written again for
//! the lookup. Per POST this keeps ~48 bytes and per notification 16, so a 2,000,000-message
//! seed in 100-message POSTs needs about 40 MB.
//!
//! Traffic goes to loopback only: the URL must be `http://127.0.0.1…`, `http://localhost…` or
//! `http://[::1]…`.

use crate::customers::{Item, Mix, Rng, Sender, Senders};
use crate::payloads;
use postgres::fallible_iterator::FallibleIterator;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// About 500 bytes of single-message POST in all, like the peers' benchmark (performance.md).
const TEXT: &str = "Hi! Does the blue jacket come in another color? Can I still change my order?";
/// Wamids looked up per query after the run.
const LOOKUP_CHUNK: usize = 10_000;

/// What to send, where, and for how long.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The channel's webhook URL, e.g. `http://127.0.0.1:8080/webhook/demo`.
    pub url: String,
    pub app_secret: String,
    pub phone_number_id: String,
    /// Where `LISTEN wa_message` runs and the rows are counted.
    pub dsn: String,
    /// The channel's name, to count only its rows.
    pub channel: String,
    /// Client threads, each with its own keep-alive connection.
    pub concurrency: usize,
    /// How long the clients send (at most).
    pub duration: Duration,
    /// `Some(r)`: r POSTs per second in all, spread evenly over the clients (each waits for its
    /// next slot; a client that falls behind sends back to back until it catches up).
    /// `None`: every client sends its next POST as soon as the previous one is answered.
    pub rate: Option<f64>,
    /// Pool customers: `sender_offset..sender_offset + senders`.
    pub senders: u64,
    pub sender_offset: u64,
    /// Share of messages (0..=1) from customers who never wrote before.
    pub new_share: f64,
    /// Items (messages and statuses) per POST.
    pub batch: usize,
    /// What the items are.
    pub mix: Mix,
    /// Stop once this many messages (statuses not counted) are sent.
    pub max_messages: Option<u64>,
    /// For an https URL: the PEM certificate(s) to trust (a self-signed one, say).
    pub trusted_pem: Option<Vec<u8>>,
    /// Print progress to stderr this often.
    pub progress: Option<Duration>,
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub concurrency: usize,
    /// The rate asked for (POSTs/s), if any.
    pub rate: Option<f64>,
    /// From the first POST to the last answer.
    pub elapsed: Duration,
    /// POSTs sent, answered or not.
    pub posts: usize,
    /// POSTs answered 200.
    pub ok: usize,
    /// POSTs answered with another status, by status.
    pub non_200: BTreeMap<u16, usize>,
    /// POSTs that got no HTTP answer (connection refused or reset, timeout).
    pub transport_errors: usize,
    /// The first transport error, to say what went wrong.
    pub first_error: Option<String>,
    /// Messages in all POSTs sent.
    pub messages_sent: u64,
    /// Messages in the POSTs answered 200: what the listener acknowledged.
    pub ok_messages: u64,
    /// Statuses in all POSTs sent.
    pub statuses_sent: u64,
    /// Rows in `wa_messages` for the message wamids this run sent.
    pub committed: usize,
    /// Rows beyond the first for the same wamid (0 unless the unique constraint is gone).
    pub duplicate_rows: usize,
    /// Rows in `wa_message_statuses` for the status wamids this run sent.
    pub statuses_stored: u64,
    /// Notifications matched to a POST of this run.
    pub notified: usize,
    /// POST sent -> `wa_message` notification received, in µs, sorted.
    pub notify_latency_us: Vec<u32>,
    /// POST sent -> HTTP answer read, in µs, sorted (200 answers only).
    pub answer_time_us: Vec<u32>,
    /// The pool's size, and which customers it is.
    pub senders: u64,
    pub sender_offset: u64,
    pub new_share: f64,
    /// Distinct customers who wrote in this run (pool customers picked, plus new ones).
    pub distinct_senders: u64,
    /// Of those, new customers.
    pub new_senders: u64,
    pub batch: usize,
    pub mix: String,
    /// The run's tag in its wamids: `wamid.LOAD.<run>.…`.
    pub run: String,
}

impl LoadReport {
    pub fn non_200_total(&self) -> usize {
        self.non_200.values().sum()
    }

    /// Committed messages per second of the run.
    pub fn committed_per_second(&self) -> f64 {
        self.committed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The `p`-th percentile (0..=100) of sorted samples, nearest rank.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(us: Option<u32>) -> String {
    us.map_or("-".to_string(), |us| format!("{:.2}", f64::from(us) / 1000.0))
}

/// One line, `key=value` separated by spaces, so scripts can pick fields out.
impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<String> = self.non_200.iter().map(|(code, n)| format!("{code}:{n}")).collect();
        write!(
            f,
            "concurrency={} rate={} seconds={:.2} ok_200={} non_200={} non_200_codes={} transport_errors={} committed={} \
             committed_per_s={:.0} notified={} notify_p50_ms={} notify_p99_ms={} notify_max_ms={} \
             http_p50_ms={} http_p99_ms={} http_max_ms={} http_over_1s={} \
             messages_sent={} posts={} senders={} sender_offset={} new_share={} distinct_senders={} new_senders={} \
             batch={} mix={} ok_messages={} duplicate_rows={} statuses_sent={} statuses_stored={} run={}",
            self.concurrency,
            self.rate.map_or("max".to_string(), |r| format!("{r:.0}")),
            self.elapsed.as_secs_f64(),
            self.ok,
            self.non_200_total(),
            if codes.is_empty() { "-".to_string() } else { codes.join(",") },
            self.transport_errors,
            self.committed,
            self.committed_per_second(),
            self.notified,
            ms(percentile(&self.notify_latency_us, 50.0)),
            ms(percentile(&self.notify_latency_us, 99.0)),
            ms(self.notify_latency_us.last().copied()),
            ms(percentile(&self.answer_time_us, 50.0)),
            ms(percentile(&self.answer_time_us, 99.0)),
            ms(self.answer_time_us.last().copied()),
            self.answer_time_us.iter().filter(|t| **t > 1_000_000).count(),
            self.messages_sent,
            self.posts,
            self.senders,
            self.sender_offset,
            self.new_share,
            self.distinct_senders,
            self.new_senders,
            self.batch,
            self.mix,
            self.ok_messages,
            self.duplicate_rows,
            self.statuses_sent,
            self.statuses_stored,
            self.run,
        )
    }
}

/// One POST as a client thread saw it. Its wamids are numbered: messages
/// `first_message..first_message + messages`, statuses likewise, within the thread.
struct Post {
    /// When it was sent: µs since the run's epoch.
    at_us: u64,
    first_message: u64,
    messages: u32,
    first_status: u64,
    statuses: u32,
    /// `Some(status)` if answered, `None` on a transport error.
    status: Option<u16>,
    answer_us: u32,
}

struct ClientResult {
    thread: usize,
    posts: Vec<Post>,
    first_error: Option<String>,
}

/// What the client threads share.
struct Shared {
    senders: Senders,
    /// Messages still to send when the run has `max_messages`.
    budget: Option<AtomicU64>,
    /// Messages sent so far, for the progress line.
    messages_sent: AtomicU64,
    /// One bit per pool customer who wrote: the run's distinct senders.
    pool_used: Vec<AtomicU64>,
}

impl Shared {
    /// Takes up to `want` messages from the budget; 0 when it is spent.
    fn claim(&self, want: u64) -> u64 {
        match &self.budget {
            None => want,
            Some(budget) => budget
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| (left > 0).then(|| left - left.min(want)))
                .map_or(0, |left| left.min(want)),
        }
    }

    fn budget_spent(&self) -> bool {
        self.budget.as_ref().is_some_and(|b| b.load(Ordering::SeqCst) == 0)
    }

    fn mark_sender(&self, sender: Sender) {
        if let Sender::Pool(i) = sender {
            let bit = i - self.senders.offset;
            self.pool_used[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        }
    }

    fn distinct_senders(&self) -> u64 {
        let pool: u64 = self.pool_used.iter().map(|w| u64::from(w.load(Ordering::Relaxed).count_ones())).sum();
        pool + self.senders.new_customers()
    }
}

fn message_wamid(run_tag: &str, thread: usize, n: u64) -> String {
    format!("wamid.LOAD.{run_tag}.{thread}.{n}")
}

fn status_wamid(run_tag: &str, thread: usize, n: u64) -> String {
    format!("wamid.LOADST.{run_tag}.{thread}.{n}")
}

/// Refuses anything but a loopback URL (http, or https with a certificate to trust).
fn check_loopback(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?}: the load generator only posts to http:// or https://"))?;
    let host = if rest.starts_with('[') {
        rest.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
    } else {
        rest.split(['/', ':']).next().unwrap_or_default().to_string()
    };
    match host.as_str() {
        "127.0.0.1" | "localhost" | "[::1]" => Ok(()),
        _ => Err(format!("{url:?}: the load generator only posts to 127.0.0.1, localhost or [::1]")),
    }
}

/// TLS that trusts only the certificates in `pem` (none given: the system's roots); for the
/// load generator's `--ca-file` and the tests' https clients.
pub fn tls_trusting(pem: Option<&[u8]>) -> Result<ureq::tls::TlsConfig, String> {
    let builder = ureq::tls::TlsConfig::builder();
    let Some(pem) = pem else { return Ok(builder.build()) };
    let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
            Ok(_) => None,
            Err(e) => Some(Err(format!("--ca-file: {e}"))),
        })
        .collect::<Result<_, _>>()?;
    if certs.is_empty() {
        return Err("--ca-file holds no PEM certificate".to_string());
    }
    Ok(builder.root_certs(ureq::tls::RootCerts::new_with_certs(&certs)).build())
}

fn micros(d: Duration) -> u64 {
    d.as_micros().try_into().unwrap_or(u64::MAX)
}

/// Runs the load and measures it.
pub fn run(options: &LoadOptions) -> Result<LoadReport, String> {
    check_loopback(&options.url)?;
    tls_trusting(options.trusted_pem.as_deref())?; // a bad --ca-file fails here, not per client
    if options.concurrency == 0 || options.concurrency > 1024 {
        return Err(format!("concurrency {} is out of range (1..=1024)", options.concurrency));
    }
    if options.duration.is_zero() || options.duration > Duration::from_secs(86_400) {
        return Err("the duration must be between 1 s and 24 h".to_string());
    }
    if options.rate.is_some_and(|r| !(r > 0.0 && r <= 1e6)) {
        return Err("the rate must be between 0 and 1,000,000 POSTs/s".to_string());
    }
    if options.batch == 0 || options.batch > 1000 {
        return Err(format!("--batch {} is out of range (1..=1000 items per POST)", options.batch));
    }
    if options.max_messages == Some(0) {
        return Err("--messages must be at least 1".to_string());
    }
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let run_tag = format!("{}.{}", since_epoch.as_millis(), std::process::id());
    // New customers start where this run's clock and pid say, so each run has its own.
    let run_seed = (since_epoch.as_nanos() as u64) ^ (u64::from(std::process::id()) << 40);
    let senders = Senders::new(options.senders, options.sender_offset, options.new_share, run_seed)?;
    let shared = Arc::new(Shared {
        pool_used: (0..options.senders.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        senders,
        budget: options.max_messages.map(AtomicU64::new),
        messages_sent: AtomicU64::new(0),
    });
    let channel_id = channel_id(options)?;

    // The LISTEN connection is up before the first POST; its clock and the clients' share an epoch.
    let epoch = Instant::now();
    let clients_done = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let listener = {
        let dsn = options.dsn.clone();
        let clients_done = clients_done.clone();
        let hard_stop = Instant::now() + options.duration + Duration::from_secs(60);
        thread::spawn(move || listen(&dsn, epoch, &clients_done, hard_stop, ready_tx))
    };
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| "the LISTEN connection did not come up".to_string())??;

    let start = Instant::now();
    let deadline = start + options.duration;
    let clients: Vec<_> = (0..options.concurrency)
        .map(|n| {
            let options = options.clone();
            let run_tag = run_tag.clone();
            let shared = shared.clone();
            let seed = run_seed ^ (n as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
            thread::spawn(move || client(&options, &shared, &run_tag, n, seed, epoch, start, deadline))
        })
        .collect();
    if let Some(every) = options.progress {
        let mut next = start + every;
        while !clients.iter().all(thread::JoinHandle::is_finished) {
            thread::sleep(Duration::from_millis(100));
            if Instant::now() >= next {
                next += every;
                let sent = shared.messages_sent.load(Ordering::Relaxed);
                let secs = start.elapsed().as_secs_f64();
                eprintln!("wa-sim load: {sent} messages sent in {secs:.0} s ({:.0}/s)", sent as f64 / secs);
            }
        }
    }
    let mut results = Vec::new();
    for c in clients {
        results.push(c.join().map_err(|_| "a client thread panicked".to_string())?);
    }
    let elapsed = start.elapsed();
    clients_done.store(true, Ordering::SeqCst);
    let mut notifications = listener.join().map_err(|_| "the LISTEN thread panicked".to_string())??;
    notifications.sort_unstable();

    let posts = || results.iter().flat_map(|r| r.posts.iter());
    let messages_sent: u64 = posts().map(|p| u64::from(p.messages)).sum();
    if options.progress.is_some() {
        eprintln!("wa-sim load: looking up the {messages_sent} wamids sent");
    }
    let found = look_up(options, channel_id, &run_tag, &results, &notifications)?;
    drop(notifications);

    let mut answer_time_us: Vec<u32> = posts().filter(|p| p.status == Some(200)).map(|p| p.answer_us).collect();
    answer_time_us.sort_unstable();
    let mut non_200 = BTreeMap::new();
    for p in posts() {
        if let Some(code) = p.status.filter(|c| *c != 200) {
            *non_200.entry(code).or_insert(0) += 1;
        }
    }
    Ok(LoadReport {
        concurrency: options.concurrency,
        rate: options.rate,
        elapsed,
        posts: posts().count(),
        ok: posts().filter(|p| p.status == Some(200)).count(),
        non_200,
        transport_errors: posts().filter(|p| p.status.is_none()).count(),
        first_error: results.iter().find_map(|r| r.first_error.clone()),
        messages_sent,
        ok_messages: posts().filter(|p| p.status == Some(200)).map(|p| u64::from(p.messages)).sum(),
        statuses_sent: posts().map(|p| u64::from(p.statuses)).sum(),
        committed: found.committed,
        duplicate_rows: found.duplicate_rows,
        statuses_stored: found.statuses_stored,
        notified: found.notify_latency_us.len(),
        notify_latency_us: found.notify_latency_us,
        answer_time_us,
        senders: options.senders,
        sender_offset: options.sender_offset,
        new_share: options.new_share,
        distinct_senders: shared.distinct_senders(),
        new_senders: shared.senders.new_customers(),
        batch: options.batch,
        mix: options.mix.to_string(),
        run: run_tag,
    })
}

/// One client: one agent, at most one idle connection, POSTs until the deadline or the end of
/// the budget (back to back, or in its slots of `options.rate`).
#[allow(clippy::too_many_arguments)]
fn client(
    options: &LoadOptions,
    shared: &Shared,
    run_tag: &str,
    n: usize,
    seed: u64,
    epoch: Instant,
    start: Instant,
    deadline: Instant,
) -> ClientResult {
    // Through the cache: ureq 3 would otherwise resolve the host on a thread of its own, spawned
    // for every request (with a timeout set, before it looks in its pool), which made this load
    // generator spend a sixth of its CPU starting threads.
    let agent = cached_resolver::agent(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(1)
            .max_idle_connections_per_host(1)
            .timeout_global(Some(Duration::from_secs(30)))
            .tls_config(tls_trusting(options.trusted_pem.as_deref()).unwrap_or_default())
            .build(),
    );
    let mut rng = Rng::new(seed);
    let mut result = ClientResult { thread: n, posts: Vec::new(), first_error: None };
    // With a rate, this client's slots are every `interval`, offset so the clients interleave.
    let interval = options.rate.map(|r| Duration::from_secs_f64(options.concurrency as f64 / r));
    let phase = interval.map(|i| i.mul_f64(n as f64 / options.concurrency as f64));
    let (mut next_message, mut next_status) = (1u64, 1u64);
    let mut slot_number: u64 = 0;
    while Instant::now() < deadline && !shared.budget_spent() {
        if let (Some(interval), Some(phase)) = (interval, phase) {
            let slot = start + phase + interval.mul_f64(slot_number as f64);
            if slot >= deadline {
                break;
            }
            thread::sleep(slot.saturating_duration_since(Instant::now()));
        }
        slot_number += 1;

        // What this POST carries; with a budget, only as many messages as are left.
        let items: Vec<Item> = (0..options.batch).map(|_| options.mix.pick(&mut rng)).collect();
        let wanted = items.iter().filter(|i| matches!(i, Item::Message(_))).count() as u64;
        let mut allowed = if wanted > 0 { shared.claim(wanted) } else { 0 };
        if wanted > 0 && allowed == 0 {
            break;
        }
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let (first_message, first_status) = (next_message, next_status);
        let (mut messages, mut statuses) = (Vec::new(), Vec::new());
        for item in items {
            match item {
                Item::Message(kind) if allowed > 0 => {
                    allowed -= 1;
                    let sender = shared.senders.pick(&mut rng);
                    shared.mark_sender(sender);
                    let wamid = message_wamid(run_tag, n, next_message);
                    next_message += 1;
                    let value = payloads::message_value(kind, &wamid, &sender.customer(), TEXT, timestamp)
                        .expect("the mix holds known kinds only");
                    messages.push(value);
                }
                Item::Message(_) => {} // over the budget
                Item::Status => {
                    let wamid = status_wamid(run_tag, n, next_status);
                    next_status += 1;
                    let status = if rng.below(2) == 0 { "delivered" } else { "read" };
                    let recipient = shared.senders.pick_pool(&mut rng).customer().wa_id;
                    statuses.push(payloads::status_value(status, &wamid, &recipient, timestamp));
                }
            }
        }
        let message_count = messages.len() as u32;
        let status_count = statuses.len() as u32;
        // Messages in one change, statuses in another (see payloads::merge_values).
        let changes: Vec<_> =
            [messages, statuses].into_iter().filter(|v| !v.is_empty()).map(payloads::merge_values).collect();
        let body = payloads::batch(&options.phone_number_id, changes).to_string().into_bytes();
        let signature = whatsapp_cloud::signature::sign(options.app_secret.as_bytes(), &body);
        let at = Instant::now();
        let answer = agent
            .post(&options.url)
            .content_type("application/json")
            .header(whatsapp_cloud::signature::HEADER, &signature)
            .send(&body[..])
            .and_then(|mut response| {
                // Read the whole answer, so the connection goes back to the pool.
                let _ = response.body_mut().read_to_vec()?;
                Ok(response.status().as_u16())
            });
        let answer_us = micros(at.elapsed()).min(u64::from(u32::MAX)) as u32;
        let status = match answer {
            Ok(status) => Some(status),
            Err(e) => {
                result.first_error.get_or_insert_with(|| format!("POST {}: {e}", options.url));
                // Do not spin on a listener that is down; the deadline still bounds the loop.
                thread::sleep(Duration::from_millis(10));
                None
            }
        };
        shared.messages_sent.fetch_add(u64::from(message_count), Ordering::Relaxed);
        result.posts.push(Post {
            at_us: micros(at - epoch),
            first_message,
            messages: message_count,
            first_status,
            statuses: status_count,
            status,
            answer_us,
        });
    }
    result
}

/// Holds `LISTEN wa_message` and timestamps each notification's message id (µs since `epoch`),
/// until the clients are done and no notification came for 500 ms (at most 5 s after that, or
/// `hard_stop`).
fn listen(
    dsn: &str,
    epoch: Instant,
    clients_done: &AtomicBool,
    hard_stop: Instant,
    ready: mpsc::Sender<Result<(), String>>,
) -> Result<Vec<(i64, u64)>, String> {
    let mut client = match postgres::Client::connect(dsn, postgres::NoTls) {
        Ok(c) => c,
        Err(e) => {
            let e = format!("connecting to {dsn}: {e}");
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    if let Err(e) = client.batch_execute("LISTEN wa_message") {
        let _ = ready.send(Err(format!("LISTEN wa_message: {e}")));
        return Err(e.to_string());
    }
    let _ = ready.send(Ok(()));
    let mut seen = Vec::new();
    let mut done_at: Option<Instant> = None;
    let mut last_arrival = Instant::now();
    while Instant::now() < hard_stop {
        if done_at.is_none() && clients_done.load(Ordering::SeqCst) {
            done_at = Some(Instant::now());
        }
        if let Some(done) = done_at
            && (last_arrival.max(done).elapsed() >= Duration::from_millis(500)
                || done.elapsed() >= Duration::from_secs(5))
        {
            break;
        }
        let mut notifications = client.notifications();
        let mut iter = notifications.timeout_iter(Duration::from_millis(100));
        // Bounded: stop to look at the flags at least every 4,096 notifications.
        for _ in 0..4096 {
            match iter.next() {
                Ok(Some(n)) => {
                    let arrived = Instant::now();
                    last_arrival = arrived;
                    let payload: serde_json::Value = serde_json::from_str(n.payload()).unwrap_or_default();
                    if let Some(id) = payload["id"].as_i64() {
                        seen.push((id, micros(arrived - epoch)));
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(format!("LISTEN connection: {e}")),
            }
        }
    }
    Ok(seen)
}

fn channel_id(options: &LoadOptions) -> Result<i64, String> {
    let mut client = postgres::Client::connect(&options.dsn, postgres::NoTls)
        .map_err(|e| format!("connecting to {}: {e}", options.dsn))?;
    let row = client
        .query_opt("SELECT id FROM wa_channels WHERE name = $1", &[&options.channel])
        .map_err(|e| format!("reading channel {:?}: {e}", options.channel))?
        .ok_or_else(|| format!("no channel named {:?}", options.channel))?;
    Ok(row.get(0))
}

/// What the lookup after the run found.
struct Found {
    committed: usize,
    duplicate_rows: usize,
    statuses_stored: u64,
    /// Sorted.
    notify_latency_us: Vec<u32>,
}

/// Looks the run's wamids up, 10,000 at a time: rows of `wa_messages` (each row's id matched to
/// its notification, `notifications` sorted by id) and of `wa_message_statuses`.
fn look_up(
    options: &LoadOptions,
    channel_id: i64,
    run_tag: &str,
    results: &[ClientResult],
    notifications: &[(i64, u64)],
) -> Result<Found, String> {
    let mut client = postgres::Client::connect(&options.dsn, postgres::NoTls)
        .map_err(|e| format!("connecting to {}: {e}", options.dsn))?;
    // `channel_id = $1 AND wamid = ANY($2)`: an index scan of UNIQUE (channel_id, wamid). On a
    // small table the planner may prefer to read it all for 10,000 wamids; this session is the
    // benchmark's, not the product's, so it must not add sequential scans to what a run counts.
    client.batch_execute("SET enable_seqscan = off").map_err(|e| format!("SET enable_seqscan: {e}"))?;
    let messages = client
        .prepare("SELECT id, wamid FROM wa_messages WHERE channel_id = $1 AND wamid = ANY($2)")
        .map_err(|e| format!("preparing the lookup: {e}"))?;
    let statuses = client
        .prepare("SELECT count(*) FROM wa_message_statuses WHERE channel_id = $1 AND wamid = ANY($2)")
        .map_err(|e| format!("preparing the status lookup: {e}"))?;
    let mut found = Found { committed: 0, duplicate_rows: 0, statuses_stored: 0, notify_latency_us: Vec::new() };

    // A chunk of message wamids, each with the moment its POST was sent.
    let mut chunk: Vec<(String, u64)> = Vec::with_capacity(LOOKUP_CHUNK);
    let mut flush = |chunk: &mut Vec<(String, u64)>, found: &mut Found| -> Result<(), String> {
        if chunk.is_empty() {
            return Ok(());
        }
        let wamids: Vec<&str> = chunk.iter().map(|(w, _)| w.as_str()).collect();
        let rows =
            client.query(&messages, &[&channel_id, &wamids]).map_err(|e| format!("counting committed rows: {e}"))?;
        let position: HashMap<&str, usize> = wamids.iter().enumerate().map(|(i, w)| (*w, i)).collect();
        let mut seen = vec![false; chunk.len()];
        for row in rows {
            let (id, wamid): (i64, &str) = (row.get(0), row.get(1));
            let Some(&i) = position.get(wamid) else { continue };
            if std::mem::replace(&mut seen[i], true) {
                found.duplicate_rows += 1;
                continue;
            }
            found.committed += 1;
            if let Ok(k) = notifications.binary_search_by_key(&id, |(id, _)| *id) {
                let latency = notifications[k].1.saturating_sub(chunk[i].1);
                found.notify_latency_us.push(latency.min(u64::from(u32::MAX)) as u32);
            }
        }
        chunk.clear();
        Ok(())
    };
    for result in results {
        for post in &result.posts {
            for n in post.first_message..post.first_message + u64::from(post.messages) {
                chunk.push((message_wamid(run_tag, result.thread, n), post.at_us));
                if chunk.len() == LOOKUP_CHUNK {
                    flush(&mut chunk, &mut found)?;
                }
            }
        }
    }
    flush(&mut chunk, &mut found)?;

    let mut status_chunk: Vec<String> = Vec::with_capacity(LOOKUP_CHUNK);
    let all_statuses = results.iter().flat_map(|r| {
        r.posts.iter().flat_map(move |p| {
            (p.first_status..p.first_status + u64::from(p.statuses)).map(move |n| status_wamid(run_tag, r.thread, n))
        })
    });
    for wamid in all_statuses {
        status_chunk.push(wamid);
        if status_chunk.len() == LOOKUP_CHUNK {
            found.statuses_stored += count_statuses(&mut client, &statuses, channel_id, &status_chunk)?;
            status_chunk.clear();
        }
    }
    if !status_chunk.is_empty() {
        found.statuses_stored += count_statuses(&mut client, &statuses, channel_id, &status_chunk)?;
    }
    found.notify_latency_us.sort_unstable();
    Ok(found)
}

fn count_statuses(
    client: &mut postgres::Client,
    statement: &postgres::Statement,
    channel_id: i64,
    wamids: &[String],
) -> Result<u64, String> {
    let row = client.query_one(statement, &[&channel_id, &wamids]).map_err(|e| format!("counting statuses: {e}"))?;
    Ok(row.get::<_, i64>(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls() {
        assert!(check_loopback("http://127.0.0.1:8080/webhook/demo").is_ok());
        assert!(check_loopback("http://localhost:8080/webhook/demo").is_ok());
        assert!(check_loopback("http://[::1]:8080/webhook/demo").is_ok());
        assert!(check_loopback("http://127.0.0.1.example.com/webhook/demo").is_err());
        assert!(check_loopback("http://10.0.0.1:8080/webhook/demo").is_err());
        assert!(check_loopback("https://127.0.0.1:8080/webhook/demo").is_ok());
        assert!(check_loopback("ftp://127.0.0.1:8080/webhook/demo").is_err());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&samples, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&samples, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
        assert_eq!(ms(Some(1234)), "1.23");
        assert_eq!(ms(None), "-");
    }

    fn shared(budget: Option<u64>) -> Shared {
        Shared {
            senders: Senders::new(100, 0, 0.0, 1).unwrap(),
            budget: budget.map(AtomicU64::new),
            messages_sent: AtomicU64::new(0),
            pool_used: (0..2).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[test]
    fn the_budget_hands_out_exactly_max_messages() {
        let s = shared(Some(250));
        assert_eq!(s.claim(100), 100);
        assert_eq!(s.claim(100), 100);
        assert!(!s.budget_spent());
        assert_eq!(s.claim(100), 50);
        assert!(s.budget_spent());
        assert_eq!(s.claim(100), 0);
        let unlimited = shared(None);
        assert_eq!(unlimited.claim(100), 100);
        assert!(!unlimited.budget_spent());
        // Many threads at once still hand out no more than the budget.
        let s = Arc::new(shared(Some(100_000)));
        let total: u64 = (0..8)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || (0..10_000).map(|_| s.claim(3)).sum::<u64>())
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(total, 100_000);
    }

    #[test]
    fn distinct_senders_count_each_pool_customer_once() {
        let s = shared(None);
        for i in [0, 5, 5, 99, 64, 0] {
            s.mark_sender(Sender::Pool(i));
        }
        s.mark_sender(Sender::New(12));
        assert_eq!(s.distinct_senders(), 4); // new customers are counted by Senders::pick
    }

    #[test]
    fn wamids_are_numbered_per_run_and_thread() {
        assert_eq!(message_wamid("17.3", 2, 9), "wamid.LOAD.17.3.2.9");
        assert_eq!(status_wamid("17.3", 2, 9), "wamid.LOADST.17.3.2.9");
        // A status wamid never matches the messages' LIKE 'wamid.LOAD.%' prefix of a run.
        assert!(!status_wamid("17.3", 2, 9).starts_with("wamid.LOAD.17.3."));
    }
}
