//! Meta's throughput limits, kept on our side so that messages wait in the queue instead of
//! failing: the rate of a business number (80 messages/s by default, up to 1,000; over it,
//! 130429) and the pair rate (one message every 6 s to the same user, with bursts of up to 45
//! borrowing future quota; over it, 131056). Both are token buckets; time is passed in, so
//! they are tested without waiting.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A token bucket: holds up to `capacity` messages, refilled at `per_second`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(capacity: f64, per_second: f64, now: Instant) -> TokenBucket {
        TokenBucket { tokens: capacity, capacity, per_second, at: now }
    }

    /// A channel's bucket: one second's worth at once, refilled at its rate.
    pub fn per_second(rate: i32, now: Instant) -> TokenBucket {
        let rate = f64::from(rate.max(1));
        TokenBucket::full(rate, rate, now)
    }

    /// Follows a change of the channel's limit (it is re-read with every claim).
    pub fn set_rate(&mut self, rate: i32, now: Instant) {
        self.refill(now);
        let rate = f64::from(rate.max(1));
        self.capacity = rate;
        self.per_second = rate;
        self.tokens = self.tokens.min(rate);
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.at = self.at.max(now);
    }

    /// Whole messages that may go now.
    pub fn available(&mut self, now: Instant) -> i64 {
        self.refill(now);
        self.tokens.floor().max(0.0) as i64
    }

    /// Spends one token, or says how long until there is one.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_second))
        }
    }

    /// When the next whole token arrives, if there is none now.
    pub fn refill_in(&self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let tokens = self.tokens + elapsed * self.per_second;
        (tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - tokens) / self.per_second))
    }

    fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * self.per_second >= self.capacity
    }
}

/// Meta's pair rate: one message every 6 s to the same user...
pub const PAIR_INTERVAL: Duration = Duration::from_secs(6);
/// ...with bursts of up to 45, which borrow future quota.
pub const PAIR_BURST: u32 = 45;

/// The pair rate of every (business number, user) pair that was written to recently.
#[derive(Debug)]
pub struct PairLimit<K> {
    pairs: HashMap<K, TokenBucket>,
    swept_at: Option<Instant>,
}

impl<K: Hash + Eq> Default for PairLimit<K> {
    fn default() -> Self {
        PairLimit { pairs: HashMap::new(), swept_at: None }
    }
}

impl<K: Hash + Eq> PairLimit<K> {
    /// Lets one message to `pair` go now, or says how long it must wait.
    pub fn admit(&mut self, pair: K, now: Instant) -> Result<(), Duration> {
        self.sweep(now);
        self.pairs
            .entry(pair)
            .or_insert_with(|| TokenBucket::full(f64::from(PAIR_BURST), 1.0 / PAIR_INTERVAL.as_secs_f64(), now))
            .try_take(now)
    }

    /// Pairs being tracked (a full bucket is forgotten: it is the same as a new one).
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Forgets full buckets, at most once a minute, so memory follows the active pairs.
    fn sweep(&mut self, now: Instant) {
        if self.swept_at.is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(60)) {
            return;
        }
        self.swept_at = Some(now);
        self.pairs.retain(|_, bucket| !bucket.is_full(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(a: Duration, b: Duration) {
        assert!((a.as_secs_f64() - b.as_secs_f64()).abs() < 1e-6, "{a:?} is not {b:?}");
    }

    #[test]
    fn a_channel_bucket_allows_one_second_at_once_then_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::per_second(80, t0);
        assert_eq!(b.available(t0), 80);
        for _ in 0..80 {
            b.try_take(t0).unwrap();
        }
        assert_eq!(b.available(t0), 0);
        let wait = b.try_take(t0).unwrap_err();
        assert_close(wait, Duration::from_secs_f64(1.0 / 80.0));
        assert_eq!(b.refill_in(t0), Some(wait));
        assert_eq!(b.available(t0 + Duration::from_millis(500)), 40);
        assert_eq!(b.available(t0 + Duration::from_secs(10)), 80, "never more than one second's worth");
    }

    #[test]
    fn a_lower_limit_takes_effect_at_once() {
        let t0 = Instant::now();
        let mut b = TokenBucket::per_second(1000, t0);
        b.set_rate(10, t0);
        assert_eq!(b.available(t0), 10);
    }

    #[test]
    fn the_pair_limit_allows_a_burst_of_45_then_one_every_6_seconds() {
        let t0 = Instant::now();
        let mut pairs = PairLimit::default();
        for i in 0..PAIR_BURST {
            assert_eq!(pairs.admit("+15551234567", t0), Ok(()), "message {i} of the burst");
        }
        assert_close(pairs.admit("+15551234567", t0).unwrap_err(), PAIR_INTERVAL);
        assert_eq!(pairs.admit("+15557654321", t0), Ok(()), "another user is not held up");
        let t1 = t0 + Duration::from_secs(3);
        assert_close(pairs.admit("+15551234567", t1).unwrap_err(), Duration::from_secs(3));
        let t2 = t0 + PAIR_INTERVAL;
        assert_eq!(pairs.admit("+15551234567", t2), Ok(()));
        assert!(pairs.admit("+15551234567", t2).is_err(), "one per 6 s after the burst");
    }

    #[test]
    fn pairs_whose_quota_is_back_are_forgotten() {
        let t0 = Instant::now();
        let mut pairs = PairLimit::default();
        pairs.admit(1, t0).unwrap();
        pairs.admit(2, t0).unwrap();
        assert_eq!(pairs.len(), 2);
        // After 6 s both have their one token back (full again): the next sweep drops them.
        let later = t0 + Duration::from_secs(61);
        pairs.admit(3, later).unwrap();
        assert_eq!(pairs.len(), 1);
        // A pair that used its burst is remembered until its quota is back (45 × 6 s).
        for _ in 0..PAIR_BURST {
            pairs.admit(4, later).unwrap();
        }
        pairs.admit(5, later + Duration::from_secs(61)).unwrap();
        assert!(pairs.len() >= 2, "pair 4 is still owed quota");
    }
}
