//! What the listener counts: per channel and kind in `wa_channel_counters`, and in the metrics
//! of shared memory. The metrics are published as soon as what they count has committed; the
//! table is written at most once a second (see [`crate::inbound::listener`]), in one statement
//! for every channel and kind, each with the time it was last seen.

use super::store;
use crate::metrics;
use crate::pg::subtransaction;
use crate::sql_enum;
use std::collections::HashMap;
use std::time::SystemTime;

sql_enum! {
    /// What `wa_channel_counters` counts per channel (its `kind` column): what the listener saw.
    pub enum CounterKind ("counter kind") {
        /// A signed POST whose items were all stored.
        Stored = "stored",
        /// A signed POST with items refused for their own content (kept raw, acknowledged).
        Partial = "partial",
        /// A signed POST with items not stored for a database reason (answered 500, replayed).
        Incomplete = "incomplete",
        /// A signed POST that is not a webhook payload at all.
        InvalidPayload = "invalid_payload",
        /// Updates for a phone number no channel of the app has (kept raw only).
        Unrouted = "unrouted",
        SignatureMismatch = "signature_mismatch",
        Verified = "verified",
        VerifyTokenMismatch = "verify_token_mismatch",
    }
}

impl CounterKind {
    /// The metric it adds to.
    fn metric(self) -> metrics::ChannelCounter {
        use metrics::ChannelCounter as C;
        match self {
            CounterKind::Stored => C::PostStored,
            CounterKind::Partial => C::PostPartial,
            CounterKind::Incomplete => C::PostIncomplete,
            CounterKind::InvalidPayload => C::PostInvalidPayload,
            CounterKind::Unrouted => C::UnroutedChanges,
            CounterKind::SignatureMismatch => C::PostSignatureMismatch,
            CounterKind::Verified => C::HandshakeVerified,
            CounterKind::VerifyTokenMismatch => C::HandshakeTokenMismatch,
        }
    }
}

/// Counts for `wa_channel_counters`, gathered over a batch or over a second and written once
/// per channel and kind (a counter row updated once per request, or even once per batch, is the
/// hottest row of all: every listener worker's batch waited on the other's COMMIT for it), and
/// for the metrics in shared memory, published once what they count has committed.
#[derive(Default)]
pub struct Counts {
    kinds: HashMap<(i64, CounterKind), Count>,
    /// New messages and statuses stored (metrics only).
    stored: (i64, i64),
}

/// One channel's count of one kind: how many, the latest detail given, and when the latest was
/// seen (`wa_channel_counters.last_at` says when it happened, not when it was written).
struct Count {
    n: i64,
    detail: Option<String>,
    last_at: SystemTime,
}

impl Counts {
    pub fn add(&mut self, channel_id: i64, kind: CounterKind, detail: Option<&str>) {
        self.add_n(channel_id, kind, detail, 1);
    }

    pub fn add_n(&mut self, channel_id: i64, kind: CounterKind, detail: Option<&str>, n: i64) {
        self.add_count(channel_id, kind, Count { n, detail: detail.map(str::to_string), last_at: SystemTime::now() });
    }

    fn add_count(&mut self, channel_id: i64, kind: CounterKind, count: Count) {
        let entry =
            self.kinds.entry((channel_id, kind)).or_insert(Count { n: 0, detail: None, last_at: count.last_at });
        entry.n += count.n;
        entry.last_at = entry.last_at.max(count.last_at);
        if count.detail.is_some() {
            entry.detail = count.detail;
        }
    }

    pub fn add_stored(&mut self, messages: i64, statuses: i64) {
        self.stored.0 += messages;
        self.stored.1 += statuses;
    }

    pub fn merge(&mut self, other: Counts) {
        for ((channel_id, kind), count) in other.kinds {
            self.add_count(channel_id, kind, count);
        }
        self.add_stored(other.stored.0, other.stored.1);
    }

    /// Whether there is anything to write into `wa_channel_counters`.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Writes the counts into `wa_channel_counters`, in the caller's transaction: all in one
    /// statement; if that fails (a channel deleted meanwhile), each count alone, and a count
    /// that still fails is dropped: a count is not worth the rest.
    pub fn flush(&self) {
        // In one order, so that listener workers counting the same rows never deadlock.
        let mut rows: Vec<store::CountRow> = self
            .kinds
            .iter()
            .map(|((channel_id, kind), c)| store::CountRow {
                channel_id: *channel_id,
                kind: *kind,
                n: c.n,
                detail: c.detail.clone(),
                last_at: c.last_at,
            })
            .collect();
        rows.sort_unstable_by_key(|r| (r.channel_id, r.kind.as_sql()));
        if rows.is_empty() || subtransaction::run(|| store::add_counts(&rows)).is_ok() {
            return;
        }
        for row in rows {
            let _ = subtransaction::run(|| store::add_counts(std::slice::from_ref(&row)));
        }
    }

    /// Adds the counts to the metrics; call it once what they count has committed.
    pub fn publish(&self) {
        for ((channel_id, kind), count) in &self.kinds {
            metrics::add(*channel_id, kind.metric(), u64::try_from(count.n).unwrap_or(0));
        }
        metrics::add_global_n(metrics::GlobalCounter::MessagesStored, u64::try_from(self.stored.0).unwrap_or(0));
        metrics::add_global_n(metrics::GlobalCounter::StatusesStored, u64::try_from(self.stored.1).unwrap_or(0));
    }
}
