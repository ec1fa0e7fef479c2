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
//!
//! This file holds the options and the run that drives the rest: the client threads
//! (`client.rs`), the LISTEN thread (`listen.rs`), the lookup after the run (`lookup.rs`), the
//! report (`report.rs`) and where the load may go (`target.rs`).

mod client;
mod listen;
mod lookup;
mod report;
mod target;

pub use report::{LoadReport, percentile};
pub use target::tls_trusting;

use crate::customers::{Mix, Senders};
use client::{Shared, client};
use listen::listen;
use lookup::{channel_id, look_up};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use target::check_loopback;

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
    /// The table the messages are counted in: `wa_messages`, or for a receiver other than the
    /// listener (bench/receiver) its own, with `channel_id`, `wamid` and `id` columns.
    pub stored_in: String,
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

/// A lower-case SQL name that needs no quoting (it is spliced into the lookup's text).
fn is_plain_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
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
    if !is_plain_name(&options.stored_in) {
        return Err(format!("--stored-in {:?}: give a plain lower-case table name", options.stored_in));
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
