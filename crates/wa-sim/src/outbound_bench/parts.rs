//! The two parts of the benchmark: throughput (one big transaction) and latency (paced
//! transactions of one message each).

use super::database::{db, wait_recorded};
use super::report::{Part, per_second, rates, signed_ms, thousands};
use super::worker::Worker;
use super::{CHANNEL, channel_names};
use crate::graph::{GraphSim, Received};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub(super) fn text_body(r: &Received) -> Option<String> {
    r.json()["text"]["body"].as_str().map(str::to_string)
}

pub(super) fn throughput(
    client: &mut postgres::Client,
    sim: &GraphSim,
    n: usize,
    channels: usize,
) -> Result<Part, String> {
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

pub(super) fn latency(client: &mut postgres::Client, sim: &GraphSim, rate: f64, seconds: f64) -> Result<Part, String> {
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
