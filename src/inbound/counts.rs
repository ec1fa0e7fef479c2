//! What the listener counts: per channel and kind in `wa_channel_counters` (written once per
//! batch), and in the metrics of shared memory (published once the batch has committed).

use super::store;
use crate::metrics;
use crate::pg::subtransaction;
use crate::sql_enum;
use std::collections::HashMap;

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

/// Counts for `wa_channel_counters`, gathered over a batch and written once per channel and
/// kind (a counter row updated once per request would be the batch's hottest row), and for
/// the metrics in shared memory, published once the batch has committed.
#[derive(Default)]
pub struct Counts {
    kinds: HashMap<(i64, CounterKind), (i64, Option<String>)>,
    /// New messages and statuses stored (metrics only).
    stored: (i64, i64),
}

impl Counts {
    pub fn add(&mut self, channel_id: i64, kind: CounterKind, detail: Option<&str>) {
        self.add_n(channel_id, kind, detail, 1);
    }

    pub fn add_n(&mut self, channel_id: i64, kind: CounterKind, detail: Option<&str>, n: i64) {
        let entry = self.kinds.entry((channel_id, kind)).or_insert((0, None));
        entry.0 += n;
        if let Some(d) = detail {
            entry.1 = Some(d.to_string());
        }
    }

    pub fn add_stored(&mut self, messages: i64, statuses: i64) {
        self.stored.0 += messages;
        self.stored.1 += statuses;
    }

    pub fn merge(&mut self, other: Counts) {
        for (key, (n, detail)) in other.kinds {
            let entry = self.kinds.entry(key).or_insert((0, None));
            entry.0 += n;
            if detail.is_some() {
                entry.1 = detail;
            }
        }
        self.add_stored(other.stored.0, other.stored.1);
    }

    /// Writes the counts into `wa_channel_counters`, in the caller's transaction.
    pub fn flush(&self) {
        // In one order, so that listener workers counting the same rows never deadlock.
        let mut counts: Vec<_> = self.kinds.iter().collect();
        counts.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for ((channel_id, kind), (n, detail)) in counts {
            // A channel deleted meanwhile makes this fail; a count is not worth the batch.
            let _ = subtransaction::run(|| store::count(*channel_id, *kind, detail.as_deref(), *n));
        }
    }

    /// Adds the counts to the metrics; call it once what they count has committed.
    pub fn publish(&self) {
        for ((channel_id, kind), (n, _)) in &self.kinds {
            metrics::add(*channel_id, kind.metric(), u64::try_from(*n).unwrap_or(0));
        }
        metrics::add_global_n(metrics::GlobalCounter::MessagesStored, u64::try_from(self.stored.0).unwrap_or(0));
        metrics::add_global_n(metrics::GlobalCounter::StatusesStored, u64::try_from(self.stored.1).unwrap_or(0));
    }
}
