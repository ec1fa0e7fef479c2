//! Storing again what stored webhook events hold: `wa_replay_webhook_events()` after an
//! upgrade that parses more, and the maintenance worker's replay of `incomplete` events.

use super::route::route;
use super::store::{self, EventOutcome};
use super::write_path::store_payload;
use crate::channels::store::load_channels;
use crate::pg::error::raise;
use crate::warning;
use pgrx::PgSqlErrorCode;
use pgrx::prelude::*;

/// Totals of a replay.
#[derive(Default)]
pub struct Replayed {
    pub events: i64,
    pub new_messages: i64,
    pub new_statuses: i64,
    /// Events with items that still could not be stored.
    pub still_incomplete: i64,
}

/// Stores again what the stored webhook events `first_id..=last_id` hold (all when `None`),
/// of one channel or all, or only the `incomplete` ones:
/// only messages and statuses that are not there yet are added (and notified), and each
/// event's outcome is brought up to date (an incomplete event whose items are now all stored
/// becomes `stored`, and retention may delete it).
pub fn replay(
    first_id: Option<i64>,
    last_id: Option<i64>,
    only_channel: Option<&str>,
    incomplete_only: bool,
) -> Replayed {
    let channels = load_channels();
    let only = match only_channel {
        None => None,
        Some(name) => match channels.iter().find(|c| c.name == name) {
            Some(c) => Some(c.id),
            None => raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("unknown channel '{name}'"),
                "List channels with SELECT name FROM wa_channels, or pass NULL to replay every channel's events.",
            ),
        },
    };
    let mut totals = Replayed::default();
    let mut after = first_id.map_or(0, |f| f - 1);
    // In pages, so that a large log is never all in memory at once.
    loop {
        let page = store::webhook_events_after(after, last_id, incomplete_only, 100);
        let Some(last) = page.last() else { break };
        after = last.id;
        for event in &page {
            let Some(channel) = channels.iter().find(|c| Some(c.id) == event.channel_id) else { continue };
            if only.is_some_and(|id| id != channel.id) {
                continue;
            }
            let Ok(payload) = whatsapp_cloud::webhook::parse(&event.body) else { continue };
            let stored = store_payload(channel.id, event.id, &payload, |pnid| route(&channels, channel, pnid));
            totals.events += 1;
            totals.new_messages += stored.new_messages;
            totals.new_statuses += stored.new_statuses;
            let outcome = stored.outcome();
            let summary = stored.summary();
            if event.outcome != outcome || summary.is_some() {
                store::set_webhook_event_outcome(event.id, outcome, summary.as_deref());
            }
            if outcome == EventOutcome::Incomplete {
                totals.still_incomplete += 1;
                warning!(
                    "whatsapp_channel: webhook event {} for channel '{}' is still incomplete after a replay: {}",
                    event.id,
                    channel.name,
                    summary.unwrap_or_default()
                );
            }
        }
    }
    totals
}

/// Re-processes stored webhook events (all, or ids `first_id` to `last_id`, of one channel or
/// all): after an upgrade that parses more, or after fixing a channel that was missing. Adds
/// only what is not there yet (Meta's ids decide), notifies what it adds, and returns what it did.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn wa_replay_webhook_events(
    first_id: default!(Option<i64>, "NULL"),
    last_id: default!(Option<i64>, "NULL"),
    channel: default!(Option<&str>, "NULL"),
) -> TableIterator<'static, (name!(events, i64), name!(new_messages, i64), name!(new_statuses, i64))> {
    crate::channels::access::require_admin("replay webhook events");
    let r = replay(first_id, last_id, channel, false);
    TableIterator::once((r.events, r.new_messages, r.new_statuses))
}
