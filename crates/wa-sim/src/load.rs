//! An inbound load generator: many customers writing in at once, as Meta delivers them.
//!
//! `concurrency` client threads each hold one keep-alive connection to the webhook listener and
//! POST correctly signed single-message text webhooks (unique wamids, one customer per thread)
//! back to back until the deadline. A separate thread holds a `LISTEN wa_message` connection and
//! timestamps every notification. With a rate, the clients send at that total rate instead (to
//! measure latency at a steady load, not at saturation). After the run the wamids that were
//! sent are looked up in `wa_messages` in batches: the rows found are what was verified and
//! committed, and each row's id ties its notification to the POST that carried it, so
//! POST -> NOTIFY latency is the notification's arrival minus the moment the POST was sent,
//! both on this process's clock.
//!
//! Traffic goes to loopback only: the URL must be `http://127.0.0.1…`, `http://localhost…` or
//! `http://[::1]…`.

use crate::payloads;
use postgres::fallible_iterator::FallibleIterator;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    /// How long the clients send.
    pub duration: Duration,
    /// `Some(r)`: r POSTs per second in all, spread evenly over the clients (each waits for its
    /// next slot; a client that falls behind sends back to back until it catches up).
    /// `None`: every client sends its next POST as soon as the previous one is answered.
    pub rate: Option<f64>,
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub concurrency: usize,
    /// The rate asked for, if any.
    pub rate: Option<f64>,
    /// From the first POST to the last answer.
    pub elapsed: Duration,
    /// POSTs answered 200.
    pub ok: usize,
    /// POSTs answered with another status, by status.
    pub non_200: BTreeMap<u16, usize>,
    /// POSTs that got no HTTP answer (connection refused or reset, timeout).
    pub transport_errors: usize,
    /// The first transport error, to say what went wrong.
    pub first_error: Option<String>,
    /// Rows in `wa_messages` for the wamids this run sent.
    pub committed: usize,
    /// Notifications matched to a POST of this run.
    pub notified: usize,
    /// POST sent -> `wa_message` notification received, sorted.
    pub notify_latency: Vec<Duration>,
    /// POST sent -> HTTP answer read, sorted (200 answers only).
    pub answer_time: Vec<Duration>,
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
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".to_string(), |d| format!("{:.2}", d.as_secs_f64() * 1000.0))
}

/// One line, `key=value` separated by spaces, so scripts can pick fields out.
impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<String> = self.non_200.iter().map(|(code, n)| format!("{code}:{n}")).collect();
        write!(
            f,
            "concurrency={} rate={} seconds={:.2} ok_200={} non_200={} non_200_codes={} transport_errors={} committed={} \
             committed_per_s={:.0} notified={} notify_p50_ms={} notify_p99_ms={} notify_max_ms={} \
             http_p50_ms={} http_p99_ms={} http_max_ms={} http_over_1s={}",
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
            ms(percentile(&self.notify_latency, 50.0)),
            ms(percentile(&self.notify_latency, 99.0)),
            ms(self.notify_latency.last().copied()),
            ms(percentile(&self.answer_time, 50.0)),
            ms(percentile(&self.answer_time, 99.0)),
            ms(self.answer_time.last().copied()),
            self.answer_time.iter().filter(|t| **t > Duration::from_secs(1)).count(),
        )
    }
}

/// One POST as a client thread saw it.
struct Sent {
    wamid: String,
    at: Instant,
    /// `Some(status)` if answered, `None` on a transport error.
    status: Option<u16>,
    answer_time: Duration,
}

struct ClientResult {
    sent: Vec<Sent>,
    first_error: Option<String>,
}

/// Refuses anything but a plain-HTTP loopback URL.
fn check_loopback(url: &str) -> Result<(), String> {
    let rest =
        url.strip_prefix("http://").ok_or_else(|| format!("{url:?}: the load generator only posts to http://"))?;
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

/// Runs the load and measures it.
pub fn run(options: &LoadOptions) -> Result<LoadReport, String> {
    check_loopback(&options.url)?;
    if options.concurrency == 0 || options.concurrency > 1024 {
        return Err(format!("concurrency {} is out of range (1..=1024)", options.concurrency));
    }
    if options.duration.is_zero() || options.duration > Duration::from_secs(3600) {
        return Err("the duration must be between 1 s and 1 h".to_string());
    }
    if options.rate.is_some_and(|r| !(r > 0.0 && r <= 1e6)) {
        return Err("the rate must be between 0 and 1,000,000 POSTs/s".to_string());
    }
    let run_id = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let run_tag = format!("{run_id}.{}", std::process::id());

    // The LISTEN connection is up before the first POST.
    let clients_done = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let listener = {
        let dsn = options.dsn.clone();
        let clients_done = clients_done.clone();
        let hard_stop = Instant::now() + options.duration + Duration::from_secs(60);
        thread::spawn(move || listen(&dsn, &clients_done, hard_stop, ready_tx))
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
            thread::spawn(move || client(&options, &run_tag, n, start, deadline))
        })
        .collect();
    let mut sent = Vec::new();
    let mut first_error = None;
    for c in clients {
        let result = c.join().map_err(|_| "a client thread panicked".to_string())?;
        sent.extend(result.sent);
        first_error = first_error.or(result.first_error);
    }
    let elapsed = start.elapsed();
    clients_done.store(true, Ordering::SeqCst);
    let notifications = listener.join().map_err(|_| "the LISTEN thread panicked".to_string())??;

    // Which of the sent wamids are rows, and under which ids.
    let ids = committed_ids(options, sent.iter().map(|s| s.wamid.clone()).collect())?;
    let sent_at: HashMap<&str, Instant> = sent.iter().map(|s| (s.wamid.as_str(), s.at)).collect();
    let mut notify_latency: Vec<Duration> = notifications
        .iter()
        .filter_map(|(id, arrived)| {
            let at = sent_at.get(ids.get(id)?.as_str())?;
            Some(arrived.saturating_duration_since(*at))
        })
        .collect();
    notify_latency.sort();
    let mut answer_time: Vec<Duration> = sent.iter().filter(|s| s.status == Some(200)).map(|s| s.answer_time).collect();
    answer_time.sort();
    let mut non_200 = BTreeMap::new();
    for s in &sent {
        if let Some(code) = s.status.filter(|c| *c != 200) {
            *non_200.entry(code).or_insert(0) += 1;
        }
    }
    Ok(LoadReport {
        concurrency: options.concurrency,
        rate: options.rate,
        elapsed,
        ok: sent.iter().filter(|s| s.status == Some(200)).count(),
        non_200,
        transport_errors: sent.iter().filter(|s| s.status.is_none()).count(),
        first_error,
        committed: ids.len(),
        notified: notify_latency.len(),
        notify_latency,
        answer_time,
    })
}

/// One client: one agent, at most one idle connection, POSTs until the deadline (back to back,
/// or in its slots of `options.rate`).
fn client(options: &LoadOptions, run_tag: &str, n: usize, start: Instant, deadline: Instant) -> ClientResult {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(1)
        .max_idle_connections_per_host(1)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let from = format!("1555{:07}", n + 1);
    let name = format!("Load Customer {}", n + 1);
    let mut result = ClientResult { sent: Vec::new(), first_error: None };
    // With a rate, this client's slots are every `interval`, offset so the clients interleave.
    let interval = options.rate.map(|r| Duration::from_secs_f64(options.concurrency as f64 / r));
    let phase = interval.map(|i| i.mul_f64(n as f64 / options.concurrency as f64));
    let mut seq: u64 = 0;
    while Instant::now() < deadline {
        if let (Some(interval), Some(phase)) = (interval, phase) {
            let slot = start + phase + interval.mul_f64(seq as f64);
            if slot >= deadline {
                break;
            }
            thread::sleep(slot.saturating_duration_since(Instant::now()));
        }
        seq += 1;
        let wamid = format!("wamid.LOAD.{run_tag}.{n}.{seq}");
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        // About 500 bytes of POST in all, like the peers' benchmark (performance.md).
        let text = "Hi! Does the blue jacket come in another color? Can I still change my order?";
        let body = payloads::text_message(&options.phone_number_id, &wamid, &from, &name, text, timestamp)
            .to_string()
            .into_bytes();
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
        let answer_time = at.elapsed();
        let status = match answer {
            Ok(status) => Some(status),
            Err(e) => {
                result.first_error.get_or_insert_with(|| format!("POST {}: {e}", options.url));
                // Do not spin on a listener that is down; the deadline still bounds the loop.
                thread::sleep(Duration::from_millis(10));
                None
            }
        };
        result.sent.push(Sent { wamid, at, status, answer_time });
    }
    result
}

/// Holds `LISTEN wa_message` and timestamps each notification's message id, until the clients
/// are done and no notification came for 500 ms (at most 5 s after that, or `hard_stop`).
fn listen(
    dsn: &str,
    clients_done: &AtomicBool,
    hard_stop: Instant,
    ready: mpsc::Sender<Result<(), String>>,
) -> Result<Vec<(i64, Instant)>, String> {
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
                        seen.push((id, arrived));
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(format!("LISTEN connection: {e}")),
            }
        }
    }
    Ok(seen)
}

/// `id` by wamid of the rows this run's wamids became, keyed by id.
fn committed_ids(options: &LoadOptions, wamids: Vec<String>) -> Result<HashMap<i64, String>, String> {
    let mut client = postgres::Client::connect(&options.dsn, postgres::NoTls)
        .map_err(|e| format!("connecting to {}: {e}", options.dsn))?;
    let mut ids = HashMap::new();
    for chunk in wamids.chunks(10_000) {
        let rows = client
            .query(
                "SELECT m.id, m.wamid FROM wa_messages m JOIN wa_channels c ON c.id = m.channel_id
                  WHERE c.name = $1 AND m.wamid = ANY($2)",
                &[&options.channel, &chunk],
            )
            .map_err(|e| format!("counting committed rows: {e}"))?;
        for row in rows {
            ids.insert(row.get(0), row.get(1));
        }
    }
    Ok(ids)
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
        assert!(check_loopback("https://127.0.0.1:8080/webhook/demo").is_err());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&samples, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&samples, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
