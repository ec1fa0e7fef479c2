//! What a load run measured, and the one `key=value` line it prints for scripts.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub concurrency: usize,
    /// The rate asked for (POSTs/s), if any.
    pub rate: Option<f64>,
    /// From the first POST to the last answer.
    pub elapsed: Duration,
    /// POSTs sent, answered or not.
    pub posts: usize,
    /// POSTs answered 200.
    pub ok: usize,
    /// POSTs answered with another status, by status.
    pub non_200: BTreeMap<u16, usize>,
    /// POSTs that got no HTTP answer (connection refused or reset, timeout).
    pub transport_errors: usize,
    /// The first transport error, to say what went wrong.
    pub first_error: Option<String>,
    /// Messages in all POSTs sent.
    pub messages_sent: u64,
    /// Messages in the POSTs answered 200: what the listener acknowledged.
    pub ok_messages: u64,
    /// Statuses in all POSTs sent.
    pub statuses_sent: u64,
    /// Rows in `wa_messages` for the message wamids this run sent.
    pub committed: usize,
    /// Rows beyond the first for the same wamid (0 unless the unique constraint is gone).
    pub duplicate_rows: usize,
    /// Rows in `wa_message_statuses` for the status wamids this run sent.
    pub statuses_stored: u64,
    /// Notifications matched to a POST of this run.
    pub notified: usize,
    /// POST sent -> `wa_message` notification received, in µs, sorted.
    pub notify_latency_us: Vec<u32>,
    /// POST sent -> HTTP answer read, in µs, sorted (200 answers only).
    pub answer_time_us: Vec<u32>,
    /// The pool's size, and which customers it is.
    pub senders: u64,
    pub sender_offset: u64,
    pub new_share: f64,
    /// Distinct customers who wrote in this run (pool customers picked, plus new ones).
    pub distinct_senders: u64,
    /// Of those, new customers.
    pub new_senders: u64,
    pub batch: usize,
    pub mix: String,
    /// The run's tag in its wamids: `wamid.LOAD.<run>.…`.
    pub run: String,
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
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(us: Option<u32>) -> String {
    us.map_or("-".to_string(), |us| format!("{:.2}", f64::from(us) / 1000.0))
}

/// One line, `key=value` separated by spaces, so scripts can pick fields out.
impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<String> = self.non_200.iter().map(|(code, n)| format!("{code}:{n}")).collect();
        write!(
            f,
            "concurrency={} rate={} seconds={:.2} ok_200={} non_200={} non_200_codes={} transport_errors={} committed={} \
             committed_per_s={:.0} notified={} notify_p50_ms={} notify_p99_ms={} notify_max_ms={} \
             http_p50_ms={} http_p99_ms={} http_max_ms={} http_over_1s={} \
             messages_sent={} posts={} senders={} sender_offset={} new_share={} distinct_senders={} new_senders={} \
             batch={} mix={} ok_messages={} duplicate_rows={} statuses_sent={} statuses_stored={} run={}",
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
            ms(percentile(&self.notify_latency_us, 50.0)),
            ms(percentile(&self.notify_latency_us, 99.0)),
            ms(self.notify_latency_us.last().copied()),
            ms(percentile(&self.answer_time_us, 50.0)),
            ms(percentile(&self.answer_time_us, 99.0)),
            ms(self.answer_time_us.last().copied()),
            self.answer_time_us.iter().filter(|t| **t > 1_000_000).count(),
            self.messages_sent,
            self.posts,
            self.senders,
            self.sender_offset,
            self.new_share,
            self.distinct_senders,
            self.new_senders,
            self.batch,
            self.mix,
            self.ok_messages,
            self.duplicate_rows,
            self.statuses_sent,
            self.statuses_stored,
            self.run,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&samples, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&samples, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
        assert_eq!(ms(Some(1234)), "1.23");
        assert_eq!(ms(None), "-");
    }
}
