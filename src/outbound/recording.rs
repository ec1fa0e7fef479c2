//! Recording what Meta answered to sends, and what downloads brought, on the delivery worker's
//! main thread: all of a turn's results in one transaction, each in a subtransaction of its own
//! if need be, and whatever cannot be recorded kept to be recorded again, never sent again.
//! How an error is retried (backoff, Meta's Retry-After, a paused queue, an outage) is decided
//! here from `whatsapp_cloud::graph_api`'s named sets of codes.

use super::outages::Outages;
use super::sender_pool::SendResult;
use super::store::{self, Claimed};
use crate::media::download::{DownloadResult, record_download};
use crate::media::store::MediaJob;
use crate::metrics::{self, ChannelCounter, GlobalCounter};
use crate::pg::{subtransaction, transaction};
use crate::{log, warning};
use std::time::Duration;
use whatsapp_cloud::graph_api::{self, GraphError, Retry, SendOutcome};

/// A send's answer from Meta, to record, and how often recording it failed so far.
pub struct Answer {
    message: Claimed,
    result: SendResult,
    failed_records: u32,
}

impl Answer {
    pub fn new(message: Claimed, result: SendResult) -> Answer {
        Answer { message, result, failed_records: 0 }
    }
}

/// Answers and downloads whose recording failed (a deadlock, a COMMIT refused by a user's
/// deferred trigger): recorded again on the next turn, never sent again, so that a message
/// Meta accepted is not left in `sending` to be sent again after a restart.
#[derive(Default)]
pub struct Unrecorded {
    pub sends: Vec<Answer>,
    pub downloads: Vec<(MediaJob, DownloadResult)>,
}

impl Unrecorded {
    pub fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.downloads.is_empty()
    }
}

/// Records answers and downloads in one transaction, and returns what could not be recorded,
/// to be recorded again on the next turn (never sent again). An answer that failed
/// [`MAX_FAILED_RECORDS`] times is recorded alone instead, as the message's failure with the
/// reason if need be (see [`record_alone`]), so that nothing is tried forever. A COMMIT that
/// fails (a user's deferred trigger, say) keeps everything for the next turn; the worker goes on.
pub fn record_all(results: Unrecorded, outages: &mut Outages) -> Unrecorded {
    Recording::new(results, outages).record_on_its_own(outages)
}

/// A turn's results on their way into the database: recorded inside a transaction the caller
/// runs ([`Recording::record`]), then told how that transaction ended ([`Recording::committed`]).
/// The delivery worker records them in the transaction of its next claim, one COMMIT (and one
/// WAL flush) a turn instead of two; [`record_all`] is the same in a transaction of its own.
pub struct Recording {
    sends: Vec<Answer>,
    downloads: Vec<(MediaJob, DownloadResult)>,
    /// Answers were recorded alone already (see [`Recording::new`]): their customers' queues
    /// may have moved.
    recorded_alone: bool,
}

impl Recording {
    /// Takes the results to record; an answer that failed [`MAX_FAILED_RECORDS`] times with
    /// the others is recorded alone first, in a transaction of its own (see [`record_alone`]).
    pub fn new(results: Unrecorded, outages: &mut Outages) -> Recording {
        let Unrecorded { sends, downloads } = results;
        let (stubborn, sends): (Vec<Answer>, Vec<Answer>) =
            sends.into_iter().partition(|a| a.failed_records >= MAX_FAILED_RECORDS);
        let recorded_alone = !stubborn.is_empty();
        for answer in stubborn {
            record_alone(answer, outages);
        }
        Recording { sends, downloads, recorded_alone }
    }

    pub fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.downloads.is_empty()
    }

    /// Records them in the caller's transaction (see [`record_in_transaction`]).
    pub fn record(&self, outages: &mut Outages) -> Recorded {
        let recorded = record_in_transaction(&self.sends, &self.downloads, outages);
        Recorded { not_only_accepted: recorded.not_only_accepted || self.recorded_alone, ..recorded }
    }

    /// The caller's transaction did not commit (`e`): says so, as they are recorded again.
    pub fn did_not_commit(&self, e: &str) {
        did_not_commit(self.sends.len(), e);
    }

    /// Records them in a transaction of their own.
    pub fn record_on_its_own(self, outages: &mut Outages) -> Unrecorded {
        let committed = transaction::run(|| self.record(outages));
        self.committed(committed)
    }

    /// How the transaction of [`Recording::record`] ended: once committed, the metrics are
    /// published; returns what is still to record (what failed, or everything if the
    /// transaction did not commit).
    pub fn committed(self, committed: Result<Recorded, String>) -> Unrecorded {
        let Recording { sends, downloads, .. } = self;
        let (failed_sends, failed_downloads) = match committed {
            Ok(recorded) => {
                for (channel_id, counter) in recorded.counted {
                    metrics::add(channel_id, counter, 1);
                }
                for counter in recorded.downloads {
                    metrics::add_global(counter);
                }
                (recorded.failed_sends, recorded.failed_downloads)
            }
            Err(e) => {
                did_not_commit(sends.len(), &e);
                ((0..sends.len()).collect(), (0..downloads.len()).collect())
            }
        };
        let sends = sends
            .into_iter()
            .enumerate()
            .filter(|(i, _)| failed_sends.contains(i))
            .map(|(_, a)| Answer { failed_records: a.failed_records + 1, ..a })
            .collect();
        let downloads =
            downloads.into_iter().enumerate().filter(|(i, _)| failed_downloads.contains(i)).map(|(_, d)| d).collect();
        Unrecorded { sends, downloads }
    }
}

fn did_not_commit(sends: usize, e: &str) {
    if sends > 0 {
        warning!(
            "whatsapp_channel: the results of {sends} send(s) did not commit; they will be recorded again, not sent again: {e}"
        );
    }
}

/// Times an answer may fail to be recorded with the others before it is recorded alone.
const MAX_FAILED_RECORDS: u32 = 3;
/// How soon a turn comes back to answers that could not be recorded.
pub const RECORD_AGAIN: Duration = Duration::from_secs(1);

/// What one recording transaction did: the indexes of what it could not record, and the
/// metrics to publish once it has committed.
#[derive(Default)]
pub struct Recorded {
    failed_sends: Vec<usize>,
    failed_downloads: Vec<usize>,
    counted: Vec<(i64, ChannelCounter)>,
    downloads: Vec<GlobalCounter>,
    /// The messages recorded as accepted, in one statement.
    accepted: Vec<i64>,
    /// Anything else was recorded or tried: a retry, a failure, a paused channel, a probe's
    /// answer, a download, or something that could not be recorded.
    not_only_accepted: bool,
}

impl Recorded {
    /// Whether what was recorded may let a claim find a message that the last claim could not:
    /// anything but accepted sends may (a retry or a failure moves its customer's queue, a
    /// probe's answer resumes a channel, a download frees a slot), and accepted sends do when
    /// one of their customers has another message queued (asked of the database). In the
    /// recording's transaction.
    pub fn may_free_a_message(&self) -> bool {
        self.not_only_accepted || (!self.accepted.is_empty() && store::queued_behind(&self.accepted))
    }
}

/// The sends Meta accepted (nearly all) in one statement; if that fails, each answer in its own
/// subtransaction, as are the others (retries, failures) and the downloads, so that one bad row
/// costs only itself.
fn record_in_transaction(sent: &[Answer], fetched: &[(MediaJob, DownloadResult)], outages: &mut Outages) -> Recorded {
    let mut out = Recorded::default();
    let together: Vec<(i64, Option<&str>)> =
        sent.iter().filter_map(|a| Some((a.message.id, accepted_wamid(&a.result)?))).collect();
    let together_stored = !together.is_empty() && subtransaction::run(|| store::mark_sent(&together)).is_ok();
    out.not_only_accepted = !fetched.is_empty();
    for (i, answer) in sent.iter().enumerate() {
        if together_stored && accepted_wamid(&answer.result).is_some() {
            outages.answered(&answer.message);
            out.counted.push((answer.message.channel_id, ChannelCounter::SendSent));
            out.accepted.push(answer.message.id);
            out.not_only_accepted |= answer.message.probe;
            continue;
        }
        out.not_only_accepted = true;
        match subtransaction::run(|| record(&answer.message, &answer.result, outages)) {
            Ok(counters) => out.counted.extend(counters.into_iter().map(|c| (answer.message.channel_id, c))),
            Err(e) => {
                warning!(
                    "whatsapp_channel: could not record the result of message {}, will retry: {e}",
                    answer.message.id
                );
                out.failed_sends.push(i);
            }
        }
    }
    for (i, (job, result)) in fetched.iter().enumerate() {
        match subtransaction::run(|| record_download(job, result)) {
            Ok(counter) => out.downloads.push(counter),
            Err(e) => {
                warning!("whatsapp_channel: could not record the media of message {}, will retry: {e}", job.message_id);
                out.failed_downloads.push(i);
            }
        }
    }
    out
}

/// Records an answer that failed [`MAX_FAILED_RECORDS`] times with the others, in a transaction
/// of its own; if that fails too, records the message as failed with the reason (Meta's answer
/// included), so the inbox shows what happened instead of "sending" for good. If even that
/// cannot commit, the message stays `sending`: the next start waits for its status before it
/// sends it again (see _wa_requeue_interrupted).
fn record_alone(answer: Answer, outages: &mut Outages) {
    let message = &answer.message;
    let recorded = transaction::run(|| subtransaction::run(|| record(message, &answer.result, outages)));
    let error = match recorded {
        Ok(Ok(counters)) => {
            counters.into_iter().for_each(|c| metrics::add(message.channel_id, c, 1));
            return;
        }
        Ok(Err(e)) | Err(e) => e,
    };
    let meta_said = match &answer.result {
        SendResult::Answered { outcome: SendOutcome::Accepted { wamid }, .. } => {
            format!("Meta accepted it as {}", wamid.as_deref().unwrap_or("(no wamid)"))
        }
        SendResult::Answered { outcome: SendOutcome::Failed(e), .. } => format!("Meta refused it: {}", e.message),
        SendResult::Transport(reason) => format!("the request failed: {reason}"),
    };
    let title = format!("the result of the send could not be recorded ({error}); {meta_said}");
    warning!("whatsapp_channel: message {} failed: {title}", message.id);
    let failed = transaction::run(|| store::mark_failed(message.id, None, &title, None));
    match failed {
        Ok(()) => metrics::add(message.channel_id, ChannelCounter::SendFailed, 1),
        Err(e) => warning!(
            "whatsapp_channel: message {} stays 'sending' ({e}); the next start waits for its status before sending it again",
            message.id
        ),
    }
}

/// Whether a send got no answer from the Graph API (a transport error or a 5xx, see
/// [`graph_api::is_outage`]): the outage class, which never fails a message by count, and
/// which gives back the customer's pair quota (the message is retried as unsent).
pub fn got_no_answer(result: &SendResult) -> bool {
    match result {
        SendResult::Transport(_) => true,
        SendResult::Answered { outcome: SendOutcome::Failed(error), .. } => graph_api::is_outage(error),
        SendResult::Answered { outcome: SendOutcome::Accepted { .. }, .. } => false,
    }
}

/// `Some(wamid)` for a send Meta accepted (its wamid, which an answer might lack).
fn accepted_wamid(result: &SendResult) -> Option<Option<&str>> {
    match result {
        SendResult::Answered { outcome: SendOutcome::Accepted { wamid }, .. } => Some(wamid.as_deref()),
        _ => None,
    }
}

/// Records one send's result; returns what it counts for the metrics (published once the
/// recording has committed). A failure for lack of an answer (see [`graph_api::is_outage`])
/// never fails the message by its count of attempts: it is retried with backoff, and once the
/// channel counts as unreachable it waits for the channel's next probe (see [`Outages`]).
fn record(message: &Claimed, result: &SendResult, outages: &mut Outages) -> Vec<ChannelCounter> {
    let (error, retry_after) = match result {
        SendResult::Answered { outcome: SendOutcome::Accepted { wamid }, .. } => {
            outages.answered(message);
            store::mark_sent(&[(message.id, wamid.as_deref())]);
            return vec![ChannelCounter::SendSent];
        }
        SendResult::Answered { outcome: SendOutcome::Failed(error), retry_after } => (error.clone(), *retry_after),
        SendResult::Transport(reason) => {
            (GraphError { code: None, http_status: 0, message: reason.clone(), details: None }, None)
        }
    };
    let code = error.code.and_then(|c| i32::try_from(c).ok());
    let outage = got_no_answer(result);
    if !outage {
        outages.answered(message);
    } else if outages.unanswered(message) {
        // The channel is unreachable: this message is due again at once, and its channel's
        // next probe decides when it goes (see _wa_claim_due).
        store::mark_retry(message.id, 0.0, code, &error.message, error.details.as_deref());
        let class = match result {
            SendResult::Transport(_) => ChannelCounter::ErrorTransport,
            _ => ChannelCounter::ErrorTransient,
        };
        return vec![ChannelCounter::SendRetried, class];
    }
    let retry = match result {
        SendResult::Transport(_) => Retry::Backoff,
        _ => graph_api::classify(&error),
    };
    let class = error_class(result, retry, &error);
    vec![act_on_failure(message, &error, retry, retry_after, outage), class]
}

/// Which error counter a failed send adds to.
fn error_class(result: &SendResult, retry: Retry, error: &GraphError) -> ChannelCounter {
    match (result, retry) {
        (SendResult::Transport(_), _) => ChannelCounter::ErrorTransport,
        (_, Retry::Credentials) => ChannelCounter::ErrorCredentials,
        (_, Retry::PairLimit) => ChannelCounter::ErrorPairLimit,
        (_, Retry::Few) => ChannelCounter::ErrorFew,
        (_, Retry::Never) => ChannelCounter::ErrorPermanent,
        (_, Retry::Backoff) if error.code.is_some_and(|c| graph_api::THROTTLES.contains(&c)) => {
            ChannelCounter::ErrorThrottle
        }
        (_, Retry::Backoff) => ChannelCounter::ErrorTransient,
    }
}

/// What a failed send leads to, by its retry set: the channel paused (its token refused), the
/// message retried after its backoff (an outage never uses up its attempts), or failed for
/// good. Returns what it counts.
fn act_on_failure(
    message: &Claimed,
    error: &GraphError,
    retry: Retry,
    retry_after: Option<Duration>,
    outage: bool,
) -> ChannelCounter {
    let code = error.code.and_then(|c| i32::try_from(c).ok());
    let attempts = u32::try_from(message.attempts).unwrap_or(u32::MAX);
    match retry {
        Retry::Credentials => {
            let hint = graph_api::hint(error.code).unwrap_or_default();
            warning!(
                "whatsapp_channel: the Graph API refused the access token ({}); the channel's queue is paused until wa_set_access_token() is called. {hint}",
                error.message
            );
            store::pause_channel(message.id, &format!("{}: {hint}", error.message));
            ChannelCounter::SendPaused
        }
        Retry::Backoff | Retry::PairLimit if outage || attempts < graph_api::MAX_ATTEMPTS => {
            retry_later(message, error, retry, retry_after, code, attempts);
            ChannelCounter::SendRetried
        }
        Retry::Few if attempts < graph_api::FEW_ATTEMPTS => {
            retry_later(message, error, retry, retry_after, code, attempts);
            ChannelCounter::SendRetried
        }
        _ => {
            let title = if matches!(retry, Retry::Backoff | Retry::PairLimit | Retry::Few) {
                format!("gave up after {attempts} attempts: {}", error.message)
            } else {
                error.message.clone()
            };
            let hint = graph_api::hint(error.code).unwrap_or("");
            warning!("whatsapp_channel: message {} failed: {title} {hint}", message.id);
            store::mark_failed(message.id, code, &title, error.details.as_deref());
            ChannelCounter::SendFailed
        }
    }
}

/// Puts a message back in the queue for its next attempt, after its backoff (or Meta's
/// Retry-After, if longer).
fn retry_later(
    message: &Claimed,
    error: &GraphError,
    retry: Retry,
    retry_after: Option<Duration>,
    code: Option<i32>,
    attempts: u32,
) {
    let backoff = graph_api::backoff(retry, attempts, graph_api::jitter(message.id, attempts));
    let delay = retry_after.map_or(backoff, |r| r.max(backoff));
    log!(
        "whatsapp_channel: message {} not sent (attempt {attempts}): {}; retrying in {:.1}s",
        message.id,
        error.message,
        delay.as_secs_f64()
    );
    store::mark_retry(message.id, delay.as_secs_f64(), code, &error.message, error.details.as_deref());
}
