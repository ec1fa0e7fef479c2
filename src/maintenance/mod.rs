//! The maintenance worker: deletes what has outlived its retention, off the webhook and
//! delivery paths. Raw webhook POSTs (`wa_webhook_events`) are kept for
//! `whatsapp_channel.webhook_event_retention`, downloaded media bytes for
//! `whatsapp_channel.media_retention`. Rows go in small batches, each its own short
//! transaction, so that neither the listener nor the delivery worker ever waits for a purge.
//!
//! It also keeps the planner's statistics of the inbound tables current (the delivery worker
//! does the same for `wa_messages`): a new inbox grows them from nothing faster than
//! autovacuum looks.
//!
//! Every minute it also replays the webhook events that hold items not stored yet
//! (`incomplete`: answered 500 for a database reason), so that nothing Meta sent is lost
//! even when Meta stops redelivering.
//!
//! Nothing that deduplicates depends on what is purged: a redelivered message or status is
//! recognised by the UNIQUE constraints of `wa_messages` and `wa_message_statuses`.

pub mod store;

use crate::pg::commit_wake::SingleWorker;
use crate::pg::extension::use_extension_schema;
use crate::pg::{guc, worker};
use crate::{channels, inbound, media, metrics, outbound};
use crate::{log, warning};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use std::time::{Duration, Instant};

/// Rows per purge transaction: small enough that a batch takes milliseconds.
const BATCH: i64 = 1000;
/// How often the worker looks for expired rows (and at once after a configuration reload).
const EVERY: Duration = Duration::from_secs(60);
/// How often it measures the queues for `/metrics` (when served): the gauges' staleness.
const METRICS_REFRESH: Duration = Duration::from_secs(2);
/// How often it checks that the statistics of the inbound tables still fit them.
const STATISTICS_CHECK: Duration = Duration::from_secs(10);
/// The tables whose statistics it keeps (wa_messages is the delivery worker's).
const ANALYZED: [&str; 3] = ["wa_contacts", "wa_conversation_state", "wa_message_statuses"];
/// Pause between two batches while more are due, so a large backlog is spread out.
const BETWEEN_BATCHES: Duration = Duration::from_millis(10);

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn wa_maintenance_main(_arg: pg_sys::Datum) {
    let Some(_database) = worker::start_single(SingleWorker::Maintenance) else { return };
    let metrics = start_metrics();
    let mut purged_at: Option<Instant> = None;
    let mut analyzed_at: Option<Instant> = None;
    loop {
        if let Some(names) = &metrics {
            refresh_metrics(names);
        }
        if purged_at.is_none_or(|t| t.elapsed() >= EVERY) {
            replay_incomplete();
            purge_dropped_grantees();
            if !purge_expired() {
                return; // SIGTERM during a purge
            }
            purged_at = Some(Instant::now());
        }
        if analyzed_at.is_none_or(|t| t.elapsed() >= STATISTICS_CHECK) {
            for table in ANALYZED {
                BackgroundWorker::transaction(|| store::analyze_if_stale(table));
            }
            analyzed_at = Some(Instant::now());
        }
        let sleep = if metrics.is_some() { METRICS_REFRESH } else { STATISTICS_CHECK };
        if !BackgroundWorker::wait_latch(Some(sleep)) {
            return;
        }
        if worker::reload_if_asked() {
            purged_at = None; // the retention may have changed: look now
        }
    }
}

/// Serves `/metrics` if `whatsapp_channel.metrics_address` is set; a bad address is logged
/// and leaves the rest of the worker running.
fn start_metrics() -> Option<metrics::server::ChannelNames> {
    let address = guc::metrics_address()?;
    match metrics::server::start(&address, guc::listener_workers()) {
        Ok(names) => {
            log!("whatsapp_channel: Prometheus metrics on http://{address}/metrics");
            Some(names)
        }
        Err(e) => {
            warning!("whatsapp_channel: no metrics: {e}; fix whatsapp_channel.metrics_address and restart");
            None
        }
    }
}

/// What the metrics' HTTP threads cannot read themselves: channel names, queue lengths and
/// webhook fields not understood.
fn refresh_metrics(names: &metrics::server::ChannelNames) {
    let read = BackgroundWorker::transaction(|| {
        use_extension_schema().then(|| {
            let unknown_fields = inbound::store::unknown_fields();
            (
                channels::store::channel_names(),
                outbound::store::queues(),
                inbound::store::incomplete_events(),
                unknown_fields,
            )
        })
    });
    let Some((channels, queues, incomplete, unknown_fields)) = read else { return };
    *names.write().unwrap_or_else(|p| p.into_inner()) =
        metrics::server::FromTables { names: channels.into_iter().collect(), unknown_fields };
    metrics::counters::set_gauges(&queues, &incomplete);
}

/// Stores what webhook events answered 500 still hold (see `incomplete` in sql/schema.sql):
/// usually Meta's redelivery has stored it already and this only marks the event done; if
/// Meta gave up, this is what stores it. A failure leaves the event for the next round.
fn replay_incomplete() {
    let replayed =
        crate::pg::transaction::run(|| use_extension_schema().then(|| inbound::replay::replay(None, None, None, true)));
    match replayed {
        Ok(Some(r)) if r.events > 0 => log!(
            "whatsapp_channel: replayed {} incomplete webhook event(s): {} new message(s), {} new status(es), {} still incomplete",
            r.events,
            r.new_messages,
            r.new_statuses,
            r.still_incomplete
        ),
        Err(e) => warning!("whatsapp_channel: could not replay incomplete webhook events, will try again: {e}"),
        _ => {}
    }
}

/// Deletes the channel grants of dropped roles (DROP ROLE does not see them, and a new role
/// could be given the dropped one's oid, and with it its grants).
fn purge_dropped_grantees() {
    match crate::pg::transaction::run(store::purge_dropped_grantees) {
        Ok(Some(n)) if n > 0 => log!("whatsapp_channel: deleted the channel grants of {n} dropped role(s)"),
        Err(e) => {
            warning!("whatsapp_channel: could not delete the channel grants of dropped roles, will try again: {e}")
        }
        _ => {}
    }
}

/// Deletes every expired row, a batch at a time; `false` if asked to stop meanwhile.
fn purge_expired() -> bool {
    let events = guc::webhook_event_retention_s();
    let media_retention = guc::media_retention_s();
    for (what, retention, purge) in [
        ("webhook events", events, store::purge_webhook_events as fn(i32, i64) -> Option<i64>),
        ("media contents", media_retention, media::store::purge_media_contents),
    ] {
        if retention <= 0 {
            continue; // 0: keep forever
        }
        let mut total = 0;
        // (None: the extension is not installed (yet) in this database.)
        while let Some(n) = BackgroundWorker::transaction(|| purge(retention, BATCH)) {
            total += n;
            if n < BATCH {
                break;
            }
            if !BackgroundWorker::wait_latch(Some(BETWEEN_BATCHES)) {
                return false;
            }
        }
        if total > 0 {
            log!("whatsapp_channel: deleted {total} {what} older than {retention} s (retention)");
        }
    }
    true
}
