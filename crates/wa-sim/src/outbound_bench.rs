//! An outbound benchmark: how fast the delivery worker gets queued messages to the Graph API.
//!
//! Starts a fake Graph API in this process (answering after `latency`, as Meta does in tens of
//! milliseconds; no status webhooks), points `whatsapp_channel.graph_api_url` at it with
//! `ALTER SYSTEM` + `pg_reload_conf()`, waits until a probe message arrives there, and uses
//! `channels` channels `bench_out`, `bench_out_2`, ... (created if missing;
//! `allow_outside_window`, each at Meta's 1,000 messages/s) for two parts:
//!
//! - **throughput**: `messages` texts to distinct recipients, spread evenly over the channels,
//!   queued in one transaction; from
//!   the moment COMMIT returned to the last request's arrival at the simulator, and the
//!   sustained rate between the arrivals of the 10th and 90th percentile messages;
//! - **latency**: `rate` messages per second for `seconds`, each its own transaction (one
//!   connection, paced); COMMIT returned -> request arrival per message, matched by body.
//!
//! Both instants are taken on this process's clock. Afterwards the setting is put back (also
//! on error or panic: the previous `ALTER SYSTEM` value, or `RESET` when there was none) and
//! the `bench_out` messages are deleted. Only 127.0.0.1 is contacted besides the database.

use crate::graph::{GraphSim, Options, Received};
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

const CHANNEL: &str = "bench_out";
const SETTING: &str = "whatsapp_channel.graph_api_url";

#[derive(Debug, Clone)]
pub struct OutboundOptions {
    pub dsn: String,
    /// How long the fake Graph API takes to answer each request.
    pub latency: Duration,
    /// Messages queued in one transaction (throughput part).
    pub messages: usize,
    /// Messages per second, each in its own transaction (latency part); 0 skips the part.
    pub rate: f64,
    /// How long the latency part sends.
    pub seconds: f64,
    /// Channels the throughput part spreads its messages over (the latency part uses the first).
    pub channels: usize,
}

/// The benchmark's channels: `bench_out`, then `bench_out_2`, `bench_out_3`, ...
fn channel_names(n: usize) -> Vec<String> {
    (1..=n.max(1)).map(|i| if i == 1 { CHANNEL.to_string() } else { format!("{CHANNEL}_{i}") }).collect()
}

/// One part's measurements.
#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    /// Messages committed.
    pub queued: usize,
    /// Of those, requests that arrived at the simulator before the deadline.
    pub received: usize,
    /// Received messages per second: `received` / (last arrival - first COMMIT returned).
    pub delivered_per_s: f64,
    /// Messages per second between the arrivals of the 10th and the 90th percentile message.
    pub sustained_per_s: f64,
    /// COMMIT returned -> request arrival, in ms, sorted (negative: arrived before COMMIT returned).
    pub latency_ms: Vec<f64>,
    /// How long the COMMITs (or autocommitted calls) took, in ms, sorted.
    pub commit_ms: Vec<f64>,
    /// Messages per second the client actually committed (latency part: the pacing achieved).
    pub committed_per_s: f64,
    /// `status: count` of the part's rows once the worker had recorded the answers.
    pub statuses: String,
    /// Requests arrived in each whole second after the (first) COMMIT returned.
    pub per_second: Vec<usize>,
    /// CPU the delivery worker used during the part, in seconds: its main thread, and all its
    /// threads; `None` when its process cannot be read here (the database is not local).
    pub worker_cpu: Option<(f64, f64)>,
    /// How long the part ran: from its first COMMIT to its last arrival.
    pub elapsed: Duration,
}

#[derive(Debug, Clone)]
pub struct OutboundReport {
    pub latency: Duration,
    pub sim_url: String,
    pub probes: usize,
    pub parts: Vec<Part>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// 12345.6 -> "12,346"
fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < -0.5 { format!("-{out}") } else { out }
}

fn ms(x: f64) -> String {
    if !x.is_finite() {
        "—".into()
    } else if x.abs() >= 100.0 {
        thousands(x)
    } else {
        format!("{x:.1}")
    }
}

impl fmt::Display for OutboundReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "| part | committed | arrived at the mock | delivered/s (all) | sustained/s (middle 80%) | COMMIT→request p50 / p99 / max (ms) |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|")?;
        for p in &self.parts {
            let l = &p.latency_ms;
            writeln!(
                f,
                "| {} | {} | {} | {} | {} | {} / {} / {} |",
                p.name,
                thousands(p.queued as f64),
                thousands(p.received as f64),
                thousands(p.delivered_per_s),
                thousands(p.sustained_per_s),
                ms(percentile(l, 50.0)),
                ms(percentile(l, 99.0)),
                ms(l.last().copied().unwrap_or(f64::NAN)),
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "mock Graph API {} answering after {} ms; {} probe(s) until the worker used it",
            self.sim_url,
            self.latency.as_millis(),
            self.probes
        )?;
        for p in &self.parts {
            let negative = p.latency_ms.iter().filter(|x| **x < 0.0).count();
            writeln!(
                f,
                "{}: committed at {:.0}/s; COMMIT took p50 {} ms, max {} ms; {} request(s) arrived before COMMIT returned; final statuses: {}",
                p.name,
                p.committed_per_s,
                ms(percentile(&p.commit_ms, 50.0)),
                ms(p.commit_ms.last().copied().unwrap_or(f64::NAN)),
                negative,
                p.statuses
            )?;
            if let Some((main, all)) = p.worker_cpu {
                let secs = p.elapsed.as_secs_f64().max(1e-9);
                writeln!(
                    f,
                    "{}: delivery worker CPU over {:.1} s: main thread {:.1} s ({:.0}% of a core), all threads {:.1} s ({:.0}%)",
                    p.name,
                    secs,
                    main,
                    main / secs * 100.0,
                    all,
                    all / secs * 100.0
                )?;
            }
            let seconds: Vec<String> = p.per_second.iter().map(usize::to_string).collect();
            writeln!(f, "{}: requests per second after COMMIT: {}", p.name, seconds.join(" "))?;
        }
        Ok(())
    }
}

/// Puts `whatsapp_channel.graph_api_url` back when dropped (also on error or panic).
struct Restore {
    dsn: String,
    /// The previous ALTER SYSTEM value; `None`: there was none, so RESET.
    previous: Option<String>,
}

impl Restore {
    fn restore(&self) -> Result<(), String> {
        let mut client = connect(&self.dsn)?;
        let statement = match &self.previous {
            Some(v) => format!("ALTER SYSTEM SET {SETTING} = {}", literal(v)),
            None => format!("ALTER SYSTEM RESET {SETTING}"),
        };
        client.batch_execute(&statement).map_err(|e| format!("{statement}: {e}"))?;
        client.batch_execute("SELECT pg_reload_conf()").map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        match self.restore() {
            Ok(()) => eprintln!(
                "wa-sim outbound-bench: {SETTING} restored ({})",
                self.previous.as_deref().map_or("ALTER SYSTEM RESET".to_string(), |v| format!("'{v}'"))
            ),
            Err(e) => eprintln!("wa-sim outbound-bench: could not restore {SETTING}: {e}; do it by hand"),
        }
    }
}

fn connect(dsn: &str) -> Result<postgres::Client, String> {
    postgres::Client::connect(dsn, postgres::NoTls).map_err(|e| format!("connecting to {dsn}: {e}"))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn db<T>(what: &str, r: Result<T, postgres::Error>) -> Result<T, String> {
    r.map_err(|e| match e.as_db_error() {
        Some(d) => format!("{what}: {}", d.message()),
        None => format!("{what}: {e}"),
    })
}

fn text_body(r: &Received) -> Option<String> {
    r.json()["text"]["body"].as_str().map(str::to_string)
}

/// Requests per whole second after `from`.
fn per_second(from: Instant, arrivals: &[Instant]) -> Vec<usize> {
    let mut buckets = Vec::new();
    for a in arrivals {
        let i = a.saturating_duration_since(from).as_secs() as usize;
        if buckets.len() <= i {
            buckets.resize(i + 1, 0);
        }
        buckets[i] += 1;
    }
    buckets
}

/// The delivery worker's process, to read its CPU time from /proc (when the database is local).
struct Worker(Option<i32>);

impl Worker {
    fn find(client: &mut postgres::Client) -> Worker {
        let pid = client
            .query_opt("SELECT pid FROM pg_stat_activity WHERE backend_type = 'whatsapp_channel delivery'", &[])
            .ok()
            .flatten()
            .map(|r| r.get::<_, i32>(0));
        Worker(pid.filter(|p| std::path::Path::new(&format!("/proc/{p}/task/{p}/stat")).exists()))
    }

    /// CPU seconds so far: (main thread, whole process).
    fn cpu(&self) -> Option<(f64, f64)> {
        let pid = self.0?;
        let read = |path: String| -> Option<f64> {
            let stat = std::fs::read_to_string(path).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
            let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0) // USER_HZ is 100 on Linux
        };
        Some((read(format!("/proc/{pid}/task/{pid}/stat"))?, read(format!("/proc/{pid}/stat"))?))
    }

    fn used_since(&self, before: Option<(f64, f64)>) -> Option<(f64, f64)> {
        let (b, a) = (before?, self.cpu()?);
        Some((a.0 - b.0, a.1 - b.1))
    }
}

fn signed_ms(from: Instant, to: Instant) -> f64 {
    if to >= from { (to - from).as_secs_f64() * 1e3 } else { -((from - to).as_secs_f64() * 1e3) }
}

pub fn run(options: &OutboundOptions) -> Result<OutboundReport, String> {
    let sim = GraphSim::start_with(0, Options { latency: options.latency, ..Default::default() })
        .map_err(|e| format!("starting the mock Graph API: {e}"))?;
    let mut client = connect(&options.dsn)?;

    // Remember how the setting was set: restore the ALTER SYSTEM value, or RESET if there was none.
    let row = db(
        "reading the setting",
        client.query_one(
            "SELECT current_setting($1), COALESCE(sourcefile LIKE '%postgresql.auto.conf', false)
               FROM pg_settings WHERE name = $1",
            &[&SETTING],
        ),
    )
    .map_err(|e| format!("{e} (is whatsapp_channel in shared_preload_libraries?)"))?;
    let (current, from_alter_system): (String, bool) = (row.get(0), row.get(1));
    eprintln!("wa-sim outbound-bench: {SETTING} is '{current}'; mock Graph API on {}", sim.url());

    // The channels, before the setting changes (a failure here leaves nothing to restore).
    for (i, name) in channel_names(options.channels).iter().enumerate() {
        db(
            "creating the channels",
            client.execute(
                "SELECT wa_add_channel($1, (1099511627776 + $2::bigint)::text, 'EAAGbenchtoken000000000000',
                                       '0123456789abcdef0123456789abcdef', 'bench')
                  WHERE NOT EXISTS (SELECT 1 FROM wa_channels WHERE name = $1)",
                &[name, &(i as i64)],
            ),
        )?;
        db(
            "configuring the channels",
            client.execute(
                "UPDATE wa_channels SET allow_outside_window = true, max_messages_per_second = 1000,
                                        enabled = true, paused_at = NULL, paused_reason = NULL
                  WHERE name = $1",
                &[name],
            ),
        )?;
    }
    delete_messages(&mut client)?;

    let _restore = Restore { dsn: options.dsn.clone(), previous: from_alter_system.then_some(current) };
    db("ALTER SYSTEM", client.batch_execute(&format!("ALTER SYSTEM SET {SETTING} = {}", literal(&sim.url()))))?;
    db("pg_reload_conf", client.batch_execute("SELECT pg_reload_conf()"))?;
    let probes = probe(&mut client, &sim)?;
    delete_messages(&mut client)?;

    let mut parts = vec![throughput(&mut client, &sim, options.messages, options.channels)?];
    delete_messages(&mut client)?;
    if options.rate > 0.0 && options.seconds > 0.0 {
        parts.push(latency(&mut client, &sim, options.rate, options.seconds)?);
        delete_messages(&mut client)?;
    }
    Ok(OutboundReport { latency: options.latency, sim_url: sim.url(), probes, parts })
}

/// Sends probe messages until one arrives at the mock (the worker has reloaded the setting).
fn probe(client: &mut postgres::Client, sim: &GraphSim) -> Result<usize, String> {
    for n in 1..=20 {
        let body = format!("probe {} {n}", std::process::id());
        let to = format!("+1554{:07}", n);
        db("probe", client.execute("SELECT wa_send_text($1, $2, $3)", &[&CHANNEL, &to, &body]))?;
        let got = sim.wait_for(1, Duration::from_secs(2), |r| text_body(r).as_deref() == Some(body.as_str()));
        if !got.is_empty() {
            // Let the worker record it, so the parts start with an empty queue.
            wait_recorded(client, Duration::from_secs(10))?;
            return Ok(n);
        }
    }
    Err(format!(
        "no probe message reached the mock in 40 s: did the delivery worker reload {SETTING}? see the server log"
    ))
}

/// The ids of the benchmark's channels. The queries below filter on them rather than join by
/// name: with channel ids the planner knows these channels' rows are few (an index scan of
/// `UNIQUE (channel_id, wamid)`); joined by name it plans for an average channel, which on a
/// database holding millions of another channel's messages is a scan of all of them, every
/// 100 ms while the benchmark waits.
fn channel_ids(client: &mut postgres::Client) -> Result<Vec<i64>, String> {
    let rows = db(
        "reading the bench_out channels",
        client.query("SELECT id FROM wa_channels WHERE name = $1 OR name LIKE $1 || '\\_%'", &[&CHANNEL]),
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

fn delete_messages(client: &mut postgres::Client) -> Result<(), String> {
    let ids = channel_ids(client)?;
    db("deleting bench_out messages", client.execute("DELETE FROM wa_messages WHERE channel_id = ANY($1)", &[&ids]))?;
    Ok(())
}

/// Waits (bounded) until no message of the channels is queued or sending; returns `status: count`.
fn wait_recorded(client: &mut postgres::Client, timeout: Duration) -> Result<String, String> {
    let ids = channel_ids(client)?;
    let deadline = Instant::now() + timeout;
    loop {
        let rows = db(
            "counting statuses",
            client.query(
                "SELECT status, count(*) FROM wa_messages WHERE channel_id = ANY($1) GROUP BY 1 ORDER BY 1",
                &[&ids],
            ),
        )?;
        let pending = rows.iter().any(|r| matches!(r.get::<_, &str>(0), "queued" | "sending"));
        if !pending || Instant::now() >= deadline {
            let summary: Vec<String> =
                rows.iter().map(|r| format!("{} {}", r.get::<_, &str>(0), r.get::<_, i64>(1))).collect();
            return Ok(if summary.is_empty() { "none".into() } else { summary.join(", ") });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn throughput(client: &mut postgres::Client, sim: &GraphSim, n: usize, channels: usize) -> Result<Part, String> {
    let n = n.max(1);
    let names = channel_names(channels);
    let before = sim.received().len();
    let worker = Worker::find(client);
    eprintln!("wa-sim outbound-bench: queueing {n} messages over {} channel(s) in one transaction", names.len());
    let started = Instant::now();
    let mut tx = db("BEGIN", client.transaction())?;
    let queued: i64 = db(
        "queueing",
        tx.query_one(
            "SELECT count(wa_send_text(($1::text[])[1 + i % array_length($1::text[], 1)],
                                       '+1555' || lpad(i::text, 7, '0'), 'bench ' || i))
               FROM generate_series(1, $2::bigint) i",
            &[&names, &(n as i64)],
        ),
    )?
    .get(0);
    let commit_sent = Instant::now();
    db("COMMIT", tx.commit())?;
    let committed = Instant::now();
    let cpu_before = worker.cpu();
    eprintln!(
        "wa-sim outbound-bench: queued {queued} in {:.2} s, COMMIT took {:.1} ms; waiting for the mock to receive them",
        (commit_sent - started).as_secs_f64(),
        (committed - commit_sent).as_secs_f64() * 1e3
    );
    let timeout = Duration::from_secs(60) + Duration::from_secs_f64(n as f64 / 100.0);
    let got = sim.wait_for(before + n, timeout, |_| true);
    let mut arrivals: Vec<Instant> = got
        .iter()
        .skip(before)
        .filter(|r| text_body(r).is_some_and(|b| b.starts_with("bench ")))
        .map(|r| r.at)
        .collect();
    arrivals.sort();
    let worker_cpu = worker.used_since(cpu_before);
    let statuses = wait_recorded(client, Duration::from_secs(30))?;
    let received = arrivals.len();
    let mut latency_ms: Vec<f64> = arrivals.iter().map(|a| signed_ms(committed, *a)).collect();
    latency_ms.sort_by(f64::total_cmp);
    let (delivered_per_s, sustained_per_s) = rates(&arrivals, committed);
    Ok(Part {
        name: if names.len() == 1 {
            format!("throughput: {} in one transaction", thousands(n as f64))
        } else {
            format!("throughput: {} over {} channels in one transaction", thousands(n as f64), names.len())
        },
        queued: queued as usize,
        received,
        delivered_per_s,
        sustained_per_s,
        latency_ms,
        commit_ms: vec![(committed - commit_sent).as_secs_f64() * 1e3],
        committed_per_s: queued as f64 / (committed - started).as_secs_f64().max(1e-9),
        statuses,
        per_second: per_second(committed, &arrivals),
        worker_cpu,
        elapsed: arrivals.last().map_or(Duration::ZERO, |l| l.saturating_duration_since(committed)),
    })
}

fn latency(client: &mut postgres::Client, sim: &GraphSim, rate: f64, seconds: f64) -> Result<Part, String> {
    let total = ((rate * seconds).round() as usize).max(1);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let before = sim.received().len();
    eprintln!("wa-sim outbound-bench: {total} messages at {rate}/s, each its own transaction");
    let statement = db("PREPARE", client.prepare("SELECT wa_send_text($1, $2, $3)"))?;
    let worker = Worker::find(client);
    let cpu_before = worker.cpu();
    let mut commits: HashMap<String, Instant> = HashMap::with_capacity(total);
    let mut commit_ms = Vec::with_capacity(total);
    let start = Instant::now();
    for i in 0..total {
        let slot = start + interval * i as u32;
        let now = Instant::now();
        if slot > now {
            std::thread::sleep(slot - now);
        }
        let body = format!("lat {i}");
        let to = format!("+1556{i:07}");
        let sent = Instant::now();
        db("wa_send_text", client.execute(&statement, &[&CHANNEL, &to, &body]))?;
        let committed = Instant::now();
        commit_ms.push((committed - sent).as_secs_f64() * 1e3);
        commits.insert(body, committed);
    }
    let sending = start.elapsed();
    let got = sim.wait_for(before + total, Duration::from_secs(60), |_| true);
    let mut latency_ms = Vec::with_capacity(total);
    let mut arrivals = Vec::with_capacity(total);
    for r in got.iter().skip(before) {
        if let Some(committed) = text_body(r).and_then(|b| commits.get(&b).copied()) {
            latency_ms.push(signed_ms(committed, r.at));
            arrivals.push(r.at);
        }
    }
    arrivals.sort();
    let worker_cpu = worker.used_since(cpu_before);
    latency_ms.sort_by(f64::total_cmp);
    commit_ms.sort_by(f64::total_cmp);
    let statuses = wait_recorded(client, Duration::from_secs(30))?;
    let received = arrivals.len();
    let (delivered_per_s, sustained_per_s) = rates(&arrivals, start);
    Ok(Part {
        name: format!("latency: {}/s for {} s, one transaction each", thousands(rate), seconds),
        queued: total,
        received,
        delivered_per_s,
        sustained_per_s,
        latency_ms,
        commit_ms,
        committed_per_s: total as f64 / sending.as_secs_f64().max(1e-9),
        statuses,
        per_second: per_second(start, &arrivals),
        worker_cpu,
        elapsed: arrivals.last().map_or(Duration::ZERO, |l| l.saturating_duration_since(start)),
    })
}

/// Requests per second from `from` to the last arrival, and over the middle 80% of arrivals
/// (NaN with fewer than 10). `arrivals` is in order.
fn rates(arrivals: &[Instant], from: Instant) -> (f64, f64) {
    let received = arrivals.len();
    let delivered = match arrivals.last() {
        Some(last) => received as f64 / last.saturating_duration_since(from).as_secs_f64().max(1e-9),
        None => 0.0,
    };
    let sustained = if received >= 10 {
        let (a, b) = (received / 10, received * 9 / 10 - 1);
        (b - a) as f64 / (arrivals[b] - arrivals[a]).as_secs_f64().max(1e-9)
    } else {
        f64::NAN
    };
    (delivered, sustained)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_formatting() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert!(percentile(&[], 50.0).is_nan());
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(ms(2.04), "2.0");
        assert_eq!(ms(15010.2), "15,010");
        assert_eq!(literal("a'b"), "'a''b'");
        let t = Instant::now();
        let at = [t, t + Duration::from_millis(500), t + Duration::from_millis(2100)];
        assert_eq!(per_second(t, &at), vec![2, 0, 1]);
    }
}
