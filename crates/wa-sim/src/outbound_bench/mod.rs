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
//!
//! This file holds the options and the run; the two parts are in `parts.rs`, what they ask the
//! database in `database.rs`, the worker's CPU time in `worker.rs` and the report in `report.rs`.

mod database;
mod parts;
mod report;
mod worker;

pub use report::{OutboundReport, Part};

use crate::graph::{GraphSim, Options};
use database::{Restore, connect, db, delete_messages, literal, wait_recorded};
use parts::{latency, text_body, throughput};
use std::time::Duration;

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
