//! What the delivery worker does after an error: the retry class of each Meta error code, and
//! how long to wait before the next attempt.

use super::GraphError;
use std::time::Duration;

/// What the delivery worker does after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again later with exponential backoff and jitter.
    Backoff,
    /// Pair rate limit (131056): Meta says retry after 4^n seconds.
    PairLimit,
    /// Worth [`FEW_ATTEMPTS`] attempts at most (a media upload Meta failed to fetch may work
    /// the next time; a file that really is wrong never will).
    Few,
    /// The access token is expired or invalid: retrying burns attempts until it is replaced.
    Credentials,
    /// Retrying cannot help; the message fails with the error and a hint.
    Never,
}

/// Meta's throttles: slow down and try again later (the set courier, the most-used gateway,
/// learned: 4, 80007, 130429, 131048 spam rate limit, 133016 register attempts; and the Groups
/// API's 131208, too many group operations from this number in a short time).
pub const THROTTLES: &[i64] = &[4, 80007, 130429, 131048, 133016, 131208];
/// Transient failures on Meta's side: retry with backoff.
pub const TRANSIENT: &[i64] = &[1, 2, 131000, 131016, 131057];
/// Pair rate limit: one message per 6 s to one customer, past a burst.
pub const PAIR_LIMIT: &[i64] = &[131056];
/// Media upload error (often a MIME mismatch or a host that refused Meta): a few attempts.
pub const RETRIED_A_FEW_TIMES: &[i64] = &[131053];
/// The access token is invalid or expired.
pub const CREDENTIALS: &[i64] = &[0, 190];
/// Attempts at a [`Retry::Few`] error before the message fails.
pub const FEW_ATTEMPTS: u32 = 3;

/// Classifies an error by Meta's `error.code` (not the HTTP status, which Meta uses
/// inconsistently for throttling); without a code, 5xx and 429 are transient. Everything else
/// is final: 131026 (undeliverable), 131049 (per-customer marketing limit: not before 24 h),
/// 131047 (window closed), 132xxx (templates), ...
pub fn classify(error: &GraphError) -> Retry {
    let Some(code) = error.code else {
        return if error.http_status >= 500 || error.http_status == 429 { Retry::Backoff } else { Retry::Never };
    };
    if THROTTLES.contains(&code) || TRANSIENT.contains(&code) {
        Retry::Backoff
    } else if PAIR_LIMIT.contains(&code) {
        Retry::PairLimit
    } else if RETRIED_A_FEW_TIMES.contains(&code) {
        Retry::Few
    } else if CREDENTIALS.contains(&code) {
        Retry::Credentials
    } else {
        Retry::Never
    }
}

/// Whether a failed send says the Graph API is out of reach rather than that it refused the
/// message: no answer at all (`http_status` 0: a timeout, a refused or dropped connection) or a
/// 5xx. Such a failure never fails a message by count: the channel waits and probes instead.
pub fn is_outage(error: &GraphError) -> bool {
    error.http_status == 0 || error.http_status >= 500
}

/// A spread in [0, 1) for [`backoff`] that differs per message (or media job) and attempt,
/// without a random number source: the same `id` and `attempt` always give the same value.
pub fn jitter(id: i64, attempt: u32) -> f64 {
    let x = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(attempt).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// How long to wait before attempt `attempt + 1`, after `attempt` failed attempts (1-based).
/// `jitter` in `[0, 1)` spreads retries so that a recovering API is not hit in lockstep.
pub fn backoff(retry: Retry, attempt: u32, jitter: f64) -> Duration {
    let n = attempt.saturating_sub(1).min(16);
    let secs = match retry {
        Retry::PairLimit => 4f64.powi(n as i32).min(MAX_BACKOFF_SECS),
        _ => (2f64.powi(n as i32) * (1.0 + jitter)).min(MAX_BACKOFF_SECS),
    };
    Duration::from_secs_f64(secs)
}

const MAX_BACKOFF_SECS: f64 = 300.0;

/// Attempts after which a transient error is given up on (about 90 minutes of retrying).
pub const MAX_ATTEMPTS: u32 = 25;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph_api::hint;

    #[test]
    fn jitter_is_in_range_and_differs_per_message_and_attempt() {
        let values: Vec<f64> = (0..50).flat_map(|id| (1..5).map(move |a| jitter(id, a))).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        assert_ne!(jitter(1, 1), jitter(2, 1));
        assert_ne!(jitter(1, 1), jitter(1, 2));
        assert_eq!(jitter(7, 3), jitter(7, 3));
    }

    #[test]
    fn no_answer_and_5xx_are_outages_and_meta_refusals_are_not() {
        let e = |http_status, code| GraphError { code, http_status, message: String::new(), details: None };
        assert!(is_outage(&e(0, None)));
        assert!(is_outage(&e(503, Some(2))));
        assert!(is_outage(&e(500, None)));
        assert!(!is_outage(&e(400, Some(130429))), "a throttle is Meta answering");
        assert!(!is_outage(&e(401, Some(190))));
        assert!(!is_outage(&e(400, Some(131026))));
    }

    #[test]
    fn classifies_by_code_not_http_status() {
        let err =
            |code, http_status| GraphError { code: Some(code), http_status, message: String::new(), details: None };
        assert_eq!(classify(&err(130429, 400)), Retry::Backoff);
        assert_eq!(classify(&err(131056, 400)), Retry::PairLimit);
        assert_eq!(classify(&err(190, 401)), Retry::Credentials);
        assert_eq!(classify(&err(100, 500)), Retry::Never);
        // The throttles and retry classes of the best gateways (courier's sets).
        for code in [4, 80007, 130429, 131048, 133016] {
            assert_eq!(classify(&err(code, 400)), Retry::Backoff, "{code}");
        }
        assert_eq!(classify(&err(131053, 400)), Retry::Few);
        assert_eq!(classify(&err(131049, 400)), Retry::Never);
        assert_eq!(classify(&err(131026, 400)), Retry::Never);
        assert!(hint(Some(131049)).is_some_and(|h| h.contains("24 hours")));
        assert!(hint(Some(131048)).is_some());
    }

    #[test]
    fn group_errors_have_hints_and_the_group_rate_limit_is_a_throttle() {
        let err =
            |code, http_status| GraphError { code: Some(code), http_status, message: String::new(), details: None };
        for code in [131020, 131041, 131059, 131201, 131202, 131204, 131207, 131208, 131209, 131210, 131211, 131212] {
            assert!(hint(Some(code)).is_some(), "no hint for {code}");
        }
        assert_eq!(classify(&err(131208, 429)), Retry::Backoff);
        assert_eq!(classify(&err(131041, 400)), Retry::Never);
        assert_eq!(classify(&err(131020, 400)), Retry::Never);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(Retry::Backoff, 1, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(Retry::Backoff, 4, 0.5), Duration::from_secs(12));
        assert_eq!(backoff(Retry::PairLimit, 3, 0.9), Duration::from_secs(16));
        assert_eq!(backoff(Retry::Backoff, 40, 0.0), Duration::from_secs(300));
    }
}
