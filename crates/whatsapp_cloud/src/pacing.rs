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
}

/// Meta's pair rate: one message every 6 s to the same user...
pub const PAIR_INTERVAL: Duration = Duration::from_secs(6);
/// ...with bursts of up to 45 within 6 s. A burst borrows the quota of the messages it sent
/// early: after it, nothing more goes to that user until the time those messages would have
/// taken at one per 6 s has passed (45 at once: 270 s).
pub const PAIR_BURST: u32 = 45;

/// One pair's quota: when what it borrowed is paid back, and the burst it is in.
#[derive(Debug, Clone)]
struct PairQuota {
    repaid_at: Instant,
    burst_started: Instant,
    burst_len: u32,
}

/// The pair rate of every (business number, user) pair that was written to recently.
#[derive(Debug)]
pub struct PairLimit<K> {
    pairs: HashMap<K, PairQuota>,
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
        match self.pairs.get_mut(&pair) {
            Some(q) if q.repaid_at > now => {
                let in_burst = q.burst_len < PAIR_BURST && now < q.burst_started + PAIR_INTERVAL;
                if !in_burst {
                    return Err(q.repaid_at - now);
                }
                q.burst_len += 1;
                q.repaid_at += PAIR_INTERVAL;
            }
            _ => {
                // Nothing owed: a new burst starts.
                self.pairs.insert(pair, PairQuota { repaid_at: now + PAIR_INTERVAL, burst_started: now, burst_len: 1 });
            }
        }
        Ok(())
    }

    /// A message [`admit`](Self::admit) let go to `pair` got no answer from Meta (a transport
    /// error or a 5xx): it is retried as unsent, so it gives back the quota it took. Otherwise every
    /// probe and retry of an outage would count as a message to the customer, and the first
    /// answer would find their queue owing minutes (6 s an attempt, 270 s past a burst). The
    /// caller refunds only the message it admitted last for that pair (one per pair is in
    /// flight at a time); a pair paid back meanwhile owes nothing to refund.
    pub fn refund(&mut self, pair: &K, now: Instant) {
        let Some(q) = self.pairs.get_mut(pair) else { return };
        q.burst_len = q.burst_len.saturating_sub(1);
        match q.repaid_at.checked_sub(PAIR_INTERVAL) {
            Some(at) if at > now => q.repaid_at = at,
            // Owes nothing now: the same as a pair never written to.
            _ => {
                self.pairs.remove(pair);
            }
        }
    }

    /// Pairs being tracked (one that owes nothing is forgotten: it is the same as a new one).
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Forgets pairs that owe nothing, at most once a minute, so memory follows active pairs.
    fn sweep(&mut self, now: Instant) {
        if self.swept_at.is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(60)) {
            return;
        }
        self.swept_at = Some(now);
        self.pairs.retain(|_, q| q.repaid_at > now);
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
    fn a_burst_of_45_then_nothing_until_the_borrowed_time_is_back() {
        let t0 = Instant::now();
        let mut pairs = PairLimit::default();
        for i in 0..PAIR_BURST {
            let at = t0 + Duration::from_millis(100 * u64::from(i)); // 4.5 s: within one burst
            assert_eq!(pairs.admit("+15551234567", at), Ok(()), "message {i} of the burst");
        }
        // 45 messages borrowed 45 x 6 s from t0.
        let t1 = t0 + Duration::from_secs(5);
        assert_close(pairs.admit("+15551234567", t1).unwrap_err(), Duration::from_secs(270 - 5));
        assert_eq!(pairs.admit("+15557654321", t1), Ok(()), "another user is not held up");
        let t2 = t0 + Duration::from_secs(100);
        assert_close(pairs.admit("+15551234567", t2).unwrap_err(), Duration::from_secs(170));
        let t3 = t0 + Duration::from_secs(270);
        assert_eq!(pairs.admit("+15551234567", t3), Ok(()), "paid back: a new burst may start");
    }

    #[test]
    fn a_burst_ends_after_6_seconds_and_is_paid_back_before_the_next() {
        let t0 = Instant::now();
        let mut pairs = PairLimit::default();
        // A bot answering with three bubbles, then a fourth 7 s later.
        for ms in [0, 200, 400] {
            pairs.admit(7, t0 + Duration::from_millis(ms)).unwrap();
        }
        assert_close(pairs.admit(7, t0 + Duration::from_secs(7)).unwrap_err(), Duration::from_secs(18 - 7));
        assert_eq!(pairs.admit(7, t0 + Duration::from_secs(18)), Ok(()));
        // One message every 6 s is never held up.
        for n in 4..10 {
            assert_eq!(pairs.admit(7, t0 + Duration::from_secs(6 * n)), Ok(()), "message at {} s", 6 * n);
        }
    }

    #[test]
    fn sends_that_got_no_answer_give_their_quota_back() {
        let t0 = Instant::now();
        let mut pairs = PairLimit::default();
        // An outage probed every 50 ms for a minute: 1,200 sends to one customer, none answered.
        for i in 0..1200 {
            let at = t0 + Duration::from_millis(50 * i);
            assert_eq!(pairs.admit("+15551234567", at), Ok(()), "probe {i}");
            pairs.refund(&"+15551234567", at);
        }
        assert!(pairs.is_empty(), "nothing is owed for sends that reached no one");
        // The first answer: the customer's queue goes out as a fresh burst.
        let t1 = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(pairs.admit("+15551234567", t1), Ok(()));
        }
        // One of three bubbles unanswered: the next is held 12 s, not 18 s.
        pairs.refund(&"+15551234567", t1);
        assert_close(
            pairs.admit("+15551234567", t1 + Duration::from_secs(7)).unwrap_err(),
            Duration::from_secs(12 - 7),
        );
        // A refund for a pair that owes nothing (paid back and forgotten) changes nothing.
        pairs.refund(&"+15550000000", t1);
        assert_eq!(pairs.admit("+15550000000", t1), Ok(()));
    }

    #[test]
    fn pairs_that_owe_nothing_are_forgotten() {
        let t0 = Instant::now();
        let mut pairs = PairLimit::default();
        pairs.admit(1, t0).unwrap();
        pairs.admit(2, t0).unwrap();
        assert_eq!(pairs.len(), 2);
        let later = t0 + Duration::from_secs(61);
        pairs.admit(3, later).unwrap();
        assert_eq!(pairs.len(), 1, "1 and 2 paid back after 6 s");
        for _ in 0..PAIR_BURST {
            pairs.admit(4, later).ok();
        }
        pairs.admit(5, later + Duration::from_secs(61)).unwrap();
        assert!(pairs.len() >= 2, "pair 4 still owes 270 s");
    }
}
