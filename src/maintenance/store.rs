//! The maintenance slice's SQL: retention of raw webhook events, and the planner's statistics.
//! (The retention of media bytes is the media slice's: [`crate::media::store`].)

use crate::pg::extension::use_extension_schema;
use crate::pg::spi::ok;
use pgrx::prelude::*;

/// Deletes up to `limit` webhook events older than `retention_s`; `None` if the extension is
/// not installed in this database. Oldest first, through `wa_webhook_events_received`.
pub fn purge_webhook_events(retention_s: i32, limit: i64) -> Option<i64> {
    if !use_extension_schema() {
        return None;
    }
    ok(Spi::get_one_with_args(
        "WITH gone AS (
             DELETE FROM wa_webhook_events WHERE id IN (
                 SELECT id FROM wa_webhook_events
                  WHERE received_at < pg_catalog.now() - pg_catalog.make_interval(secs => $1)
                    -- (kept until a replay has stored what it holds)
                    AND outcome <> 'incomplete'
                  ORDER BY received_at LIMIT $2)
             RETURNING 1)
         SELECT pg_catalog.count(*) FROM gone",
        &[retention_s.into(), limit.into()],
    ))
}

/// Deletes the grants of roles that no longer exist; `None` if the extension is not installed.
pub fn purge_dropped_grantees() -> Option<i64> {
    if !use_extension_schema() {
        return None;
    }
    ok(Spi::get_one("SELECT _wa_purge_dropped_grantees()"))
}

/// Analyzes `table` (one of the extension's) when it changed by more than half since it was
/// last analyzed; `None` if the extension is not installed.
///
/// A burst of messages can grow the queue from nothing to 100,000 rows in the minute before
/// autovacuum looks at it, and a new inbox fills its contacts and conversations from nothing:
/// on statistics that say "empty" the planner reads whole indexes where one probe would do
/// (measured: a lookup by id that scanned an index of every message, for each message sent;
/// the unread list as a bitmap scan and a sort, 28 ms instead of 0.2). Fresh statistics also
/// invalidate the plans every session has cached.
pub fn analyze_if_stale(table: &str) -> Option<bool> {
    if !use_extension_schema() {
        return None;
    }
    let stale: Option<bool> = ok(Spi::get_one_with_args(
        "SELECT pg_catalog.pg_stat_get_mod_since_analyze(c.oid) > 1000 + 0.5 * greatest(c.reltuples, 0)
           FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)",
        &[table.into()],
    ));
    if stale == Some(true) {
        // SKIP_LOCKED: autovacuum may be at it already. (The name is one of a fixed list.)
        ok(Spi::run(&format!("ANALYZE (SKIP_LOCKED) {table}")));
    }
    Some(stale == Some(true))
}
