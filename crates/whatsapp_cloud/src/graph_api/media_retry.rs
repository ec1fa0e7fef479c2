//! What a media download that did not fetch its file leads to: why it failed, read from Meta's
//! answer ([`MediaFailure`]), and what the job does next ([`media_next_step`]). A download is
//! worth retrying while its media id lives (7 days from the webhook), and only an error that
//! cannot change gives it up early: an outage or a refused token must not lose a customer's
//! photo (Chatwoot loses the attachment on one 503 of the lookup, chatwoot#15754).

use super::{GraphError, Retry, backoff, classify, is_outage};
use std::time::Duration;

/// Attempts at a media download that Meta answered but did not serve, before it is given up
/// (8.5-13.5 minutes of backoff). Attempts out of reach of Meta or with a refused token are
/// given back, so they never count towards it.
pub const MAX_MEDIA_ATTEMPTS: u32 = 10;

/// How long a media id from a webhook lives at Meta: past it, no attempt can fetch the file.
pub const MEDIA_ID_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long a download whose token Meta refused waits before it tries again by itself (the
/// longest backoff); a new token makes it due at once.
pub const MEDIA_TOKEN_WAIT: Duration = Duration::from_secs(300);

/// Why a download did not fetch its file, by what follows from it.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaFailure {
    /// Retrying cannot help (the media id is gone, the bytes do not match).
    Permanent(String),
    /// Worth a few more tries ([`MAX_MEDIA_ATTEMPTS`]): an expired URL, an error Meta gives no
    /// reason to expect to change.
    Retry(String),
    /// Meta could not be reached: no answer, a 5xx, one of its throttles or transient errors.
    /// Tried again until the media id expires, the attempt given back: an outage never uses up
    /// a download, as it never fails a send by count.
    Unreachable(String),
    /// Meta refused the access token: the channel waits for a new one, and the download with
    /// it, its attempt given back (a token expired overnight must not fail a night's photos).
    TokenRefused(String),
}

impl MediaFailure {
    /// Meta's words, or ours, for what went wrong.
    pub fn why(&self) -> &str {
        match self {
            MediaFailure::Permanent(why)
            | MediaFailure::Retry(why)
            | MediaFailure::Unreachable(why)
            | MediaFailure::TokenRefused(why) => why,
        }
    }
}

/// What a media lookup (`GET /{version}/{media-id}`) that Meta answered with an error means.
pub fn media_lookup_failure(error: &GraphError, media_id: &str) -> MediaFailure {
    if error.code == Some(100) || error.http_status == 404 {
        return MediaFailure::Permanent(format!(
            "media id {media_id} no longer exists at Meta (ids from webhooks live 7 days): {}",
            error.message
        ));
    }
    match classify(error) {
        // (Codes 0 and 190, as for a send: a bare 401 pauses nothing.)
        Retry::Credentials => MediaFailure::TokenRefused(error.message.clone()),
        Retry::Backoff => MediaFailure::Unreachable(error.message.clone()),
        _ if is_outage(error) => MediaFailure::Unreachable(error.message.clone()),
        _ => MediaFailure::Retry(error.message.clone()),
    }
}

/// What a download URL's answer other than 200 means. (Not a refused token, even for a 401:
/// the lookup just took the same token, and a pause would stop the channel's sends for a
/// token that works. An expired URL answers 404: the next attempt asks for a new one.)
pub fn media_download_failure(status: u16) -> MediaFailure {
    match status {
        500.. => MediaFailure::Unreachable(format!("the download URL answered {status}")),
        _ => MediaFailure::Retry(format!("the download URL answered {status}")),
    }
}

/// What a download that did not fetch its file does next.
#[derive(Debug, PartialEq)]
pub enum MediaNextStep {
    /// Back in the queue, due after this long: the attempt counts towards [`MAX_MEDIA_ATTEMPTS`].
    RetryIn(Duration),
    /// Back in the queue, due after this long, the attempt given back: Meta was out of reach.
    WaitOutOutage(Duration),
    /// Waits for a new token ([`MEDIA_TOKEN_WAIT`]), its attempt given back, and so do the
    /// channel's other downloads; the channel is paused as a refused send pauses it.
    WaitForToken,
    /// Given up, with why.
    GiveUp(String),
}

/// How long a download waits while Meta is out of reach, from how long it has waited already
/// (its attempts are given back, so they cannot say): half of that, from 1 s to 5 minutes,
/// times 1 to 2 by `jitter` in [0, 1), so that a recovering API is not hit in lockstep.
pub fn media_outage_wait(waited: Duration, jitter: f64) -> Duration {
    let half = (waited.as_secs_f64() / 2.0).clamp(1.0, MEDIA_TOKEN_WAIT.as_secs_f64());
    Duration::from_secs_f64(half * (1.0 + jitter))
}

/// The rule for a download that did not fetch its file, after `attempts` counted attempts (this
/// one included), `waited` since its message came; `jitter` as for [`backoff`].
pub fn media_next_step(failure: &MediaFailure, attempts: u32, waited: Duration, jitter: f64) -> MediaNextStep {
    let delay = backoff(Retry::Backoff, attempts, jitter);
    let outage_wait = media_outage_wait(waited, jitter);
    match failure {
        MediaFailure::Permanent(why) => MediaNextStep::GiveUp(why.clone()),
        MediaFailure::TokenRefused(why) if waited + MEDIA_TOKEN_WAIT >= MEDIA_ID_LIFETIME => MediaNextStep::GiveUp(
            format!("the access token was refused until the media id expired (ids from webhooks live 7 days): {why}"),
        ),
        MediaFailure::TokenRefused(_) => MediaNextStep::WaitForToken,
        MediaFailure::Unreachable(why) if waited + outage_wait >= MEDIA_ID_LIFETIME => MediaNextStep::GiveUp(format!(
            "Meta could not be reached until the media id expired (ids from webhooks live 7 days): {why}"
        )),
        MediaFailure::Unreachable(_) => MediaNextStep::WaitOutOutage(outage_wait),
        MediaFailure::Retry(why) if attempts >= MAX_MEDIA_ATTEMPTS => {
            MediaNextStep::GiveUp(format!("gave up after {attempts} attempts: {why}"))
        }
        MediaFailure::Retry(_) => MediaNextStep::RetryIn(delay),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(http_status: u16, code: Option<i64>) -> GraphError {
        GraphError { code, http_status, message: "from Meta".to_string(), details: None }
    }

    fn kind(failure: &MediaFailure) -> &'static str {
        match failure {
            MediaFailure::Permanent(_) => "permanent",
            MediaFailure::Retry(_) => "retry",
            MediaFailure::Unreachable(_) => "unreachable",
            MediaFailure::TokenRefused(_) => "token",
        }
    }

    #[test]
    fn a_lookup_error_is_read_by_what_can_change_it() {
        let cases = [
            (error(400, Some(100)), "permanent"),
            (error(404, None), "permanent"),
            (error(401, Some(190)), "token"),
            (error(400, Some(0)), "token"),
            (error(401, None), "retry"),
            (error(0, None), "unreachable"),
            (error(503, None), "unreachable"),
            (error(500, Some(131000)), "unreachable"),
            (error(400, Some(130429)), "unreachable"),
            (error(429, None), "unreachable"),
            (error(400, Some(131052)), "retry"),
            (error(403, None), "retry"),
        ];
        for (e, expected) in cases {
            assert_eq!(kind(&media_lookup_failure(&e, "1234")), expected, "{e:?}");
        }
        assert!(media_lookup_failure(&error(400, Some(100)), "1234").why().contains("media id 1234 no longer exists"));
        assert_eq!(kind(&media_download_failure(401)), "retry", "the lookup just took the token");
        assert_eq!(kind(&media_download_failure(502)), "unreachable");
        assert_eq!(kind(&media_download_failure(404)), "retry", "an expired URL is asked for again");
    }

    #[test]
    fn an_outage_is_retried_until_the_media_id_expires_and_other_errors_a_few_times() {
        let hour = Duration::from_secs(3600);
        let unreachable = MediaFailure::Unreachable("connection refused".to_string());
        // While the id lives: waited out, its attempt given back, half the time waited so far
        // (at least 1 s, at most 5 minutes, spread by the jitter).
        assert_eq!(
            media_next_step(&unreachable, 1, Duration::ZERO, 0.5),
            MediaNextStep::WaitOutOutage(Duration::from_millis(1500))
        );
        assert_eq!(
            media_next_step(&unreachable, 1, Duration::from_secs(60), 0.0),
            MediaNextStep::WaitOutOutage(Duration::from_secs(30))
        );
        assert_eq!(media_next_step(&unreachable, 1, 24 * hour, 0.0), MediaNextStep::WaitOutOutage(MEDIA_TOKEN_WAIT));
        assert_eq!(
            media_next_step(&unreachable, 1, 24 * hour, 0.5),
            MediaNextStep::WaitOutOutage(MEDIA_TOKEN_WAIT * 3 / 2)
        );
        // A retry that would come after the 7 days: given up, saying why.
        match media_next_step(&unreachable, 3, MEDIA_ID_LIFETIME - Duration::from_secs(2), 0.5) {
            MediaNextStep::GiveUp(why) => {
                assert!(why.contains("media id expired") && why.contains("connection refused"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        let retry = MediaFailure::Retry("the download URL answered 403".to_string());
        assert!(matches!(media_next_step(&retry, MAX_MEDIA_ATTEMPTS - 1, hour, 0.5), MediaNextStep::RetryIn(_)));
        assert!(matches!(
            media_next_step(&retry, MAX_MEDIA_ATTEMPTS, hour, 0.5),
            MediaNextStep::GiveUp(why) if why.starts_with("gave up after 10 attempts")
        ));
        // A refused token waits for a new one however often it was refused, until the id expires.
        let token = MediaFailure::TokenRefused("Session has expired".to_string());
        assert_eq!(media_next_step(&token, 500, 6 * 24 * hour, 0.5), MediaNextStep::WaitForToken);
        assert!(matches!(
            media_next_step(&token, 500, MEDIA_ID_LIFETIME, 0.5),
            MediaNextStep::GiveUp(why) if why.contains("Session has expired")
        ));
        // What cannot change is not retried.
        let gone = MediaFailure::Permanent("gone".to_string());
        assert_eq!(media_next_step(&gone, 1, hour, 0.5), MediaNextStep::GiveUp("gone".to_string()));
    }
}
