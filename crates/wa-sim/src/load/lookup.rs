//! The lookup after the run: which of the wamids sent were committed (and once only), which
//! statuses were stored, and each message's POST -> NOTIFY latency.

use super::LoadOptions;
use super::client::{ClientResult, message_wamid, status_wamid};
use std::collections::HashMap;

/// Wamids looked up per query after the run.
const LOOKUP_CHUNK: usize = 10_000;

pub(super) fn channel_id(options: &LoadOptions) -> Result<i64, String> {
    let mut client = postgres::Client::connect(&options.dsn, postgres::NoTls)
        .map_err(|e| format!("connecting to {}: {e}", options.dsn))?;
    let row = client
        .query_opt("SELECT id FROM wa_channels WHERE name = $1", &[&options.channel])
        .map_err(|e| format!("reading channel {:?}: {e}", options.channel))?
        .ok_or_else(|| format!("no channel named {:?}", options.channel))?;
    Ok(row.get(0))
}

/// What the lookup after the run found.
pub(super) struct Found {
    pub(super) committed: usize,
    pub(super) duplicate_rows: usize,
    pub(super) statuses_stored: u64,
    /// Sorted.
    pub(super) notify_latency_us: Vec<u32>,
}

/// Looks the run's wamids up, 10,000 at a time: rows of `wa_messages` or `--stored-in` (each row's id matched to
/// its notification, `notifications` sorted by id) and of `wa_message_statuses`.
pub(super) fn look_up(
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
        .prepare(&format!("SELECT id, wamid FROM {} WHERE channel_id = $1 AND wamid = ANY($2)", options.stored_in))
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
