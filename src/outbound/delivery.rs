//! The delivery worker: sends queued outbound messages. Woken at the commit of a transaction
//! that queued messages ([`crate::pg::commit_wake`]), and by its own timer for retries that fall due.
//!
//! Each turn of the loop records the answers that came back, then claims as many due
//! messages as there are free senders (status `sending`, COMMIT) and hands them to the
//! [`SenderPool`]. Per channel, a token bucket keeps to its `max_messages_per_second`.
//! A crash between a claim and its record leaves rows in `sending`. They go back to the queue
//! at start, but wait `whatsapp_channel.resend_interrupted_after` first: every send carries its
//! outbox id in `biz_opaque_callback_data`, and a status that echoes it records the send (see
//! `_wa_receive_statuses`), so only a message that heard nothing is sent again. A channel the
//! Graph API does not answer waits and probes ([`crate::outbound::outages`]).

use crate::metrics::{self, ChannelCounter, GlobalCounter};
use crate::outbound::outages::Outages;
use crate::outbound::sender_pool::{Download, DownloadResult, Finished, Send, SendResult, SenderPool, Work};
use crate::pg::{activity, commit_wake, guc, subtransaction, thread_wake, transaction};
use crate::store::{self, Claimed, MediaJob};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};
use whatsapp_cloud::graph_api::{self, GraphError, Retry, SendOutcome};
use whatsapp_cloud::pacing::{PairLimit, TokenBucket};

/// Requests in flight at most: 1,000 messages/s at Meta's typical 50 ms per answer needs 50,
/// so this keeps four numbers at their 1,000/s each, with room for slower answers.
const SENDERS: usize = 256;
/// Longest sleep when nothing is due: a safety net for rows queued without a wake.
const IDLE: Duration = Duration::from_secs(10);
/// Media downloads in flight at most: each holds a whole file in memory, and sends must
/// always find free senders.
const MAX_DOWNLOADS: usize = 8;
/// How long a shutdown waits for answers to sends in flight, so they are recorded rather than
/// sent again at the next start.
const DRAIN: Duration = Duration::from_secs(5);
/// Shortest sleep between two looks at the queue when something is due but was not claimable.
const MIN_WAIT: Duration = Duration::from_millis(5);
/// How often the worker checks that the planner's statistics of `wa_messages` still fit it.
const STATISTICS_CHECK: Duration = Duration::from_secs(5);
/// Shortest time between two turns. Commits may wake the worker thousands of times a second;
/// a turn costs a transaction whether it claims one message or a hundred, so one turn per
/// millisecond takes whatever those commits queued, for at most a millisecond of latency.
const MIN_TURN: Duration = Duration::from_millis(1);

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn wa_delivery_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    crate::pg::transaction::hold_cancels();
    if !crate::pg::role::wait_until_primary("the delivery worker") {
        return;
    }
    let database = guc::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    commit_wake::register_delivery_worker();
    log!("whatsapp_channel: delivery worker started, database \"{database}\"");

    let (waker, mut wakeups) = thread_wake::pair();
    let pool = SenderPool::start(SENDERS, guc::graph_api_timeout(), waker);
    let mut in_flight: HashMap<i64, Claimed> = HashMap::new();
    let mut downloads: HashMap<i64, MediaJob> = HashMap::new();
    // Answers whose recording failed (a deadlock, a COMMIT refused by a user's deferred
    // trigger): recorded again on the next turn, never sent again, so a message accepted by
    // Meta is not left in 'sending' to be sent again after a restart.
    let mut unrecorded_sends: Vec<Answer> = Vec::new();
    let mut unrecorded_downloads: Vec<(MediaJob, DownloadResult)> = Vec::new();
    let mut buckets: HashMap<i64, TokenBucket> = HashMap::new();
    let mut pairs: PairLimit<(i64, String)> = PairLimit::default();
    let mut outages = Outages::default();
    let mut recovered = false;
    let mut wait = Duration::ZERO;
    let mut last_turn = Instant::now();
    let mut statistics_checked = Instant::now();
    // Wakes at a commit that queued messages, when a send finishes, or when a retry or a
    // channel's next token falls due; never polls.
    loop {
        activity::idle(&format!("{} sends in flight, waiting for queued messages", in_flight.len()));
        // Answers that could not be recorded are tried again soon, whatever else is due.
        let unrecorded = !unrecorded_sends.is_empty() || !unrecorded_downloads.is_empty();
        let sleep = if unrecorded { wait.min(RECORD_AGAIN) } else { wait };
        if !wakeups.wait(if commit_wake::wake_pending() { Duration::ZERO } else { sleep }) {
            break;
        }
        activity::busy(&format!("recording results and claiming due messages ({} in flight)", in_flight.len()));
        if let Some(rest) = MIN_TURN.checked_sub(last_turn.elapsed()) {
            std::thread::sleep(rest);
        }
        last_turn = Instant::now();
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            pool.set_timeout(guc::graph_api_timeout());
        }
        let mut sent = std::mem::take(&mut unrecorded_sends);
        let mut fetched = std::mem::take(&mut unrecorded_downloads);
        for done in pool.finished() {
            match done {
                Finished::Sent(id, r) => sent.extend(in_flight.remove(&id).map(|c| Answer::new(c, r))),
                Finished::Downloaded(id, r) => fetched.extend(downloads.remove(&id).map(|j| (j, r))),
            }
        }
        if !sent.is_empty() || !fetched.is_empty() {
            let (left_sends, left_downloads) = record_all(sent, fetched, &mut outages);
            unrecorded_sends = left_sends;
            unrecorded_downloads = left_downloads;
            unsafe { pg_sys::pgstat_report_stat(false) };
        }

        let free = (SENDERS * 2).saturating_sub(in_flight.len() + downloads.len());
        if free == 0 {
            wait = IDLE; // a finished send wakes us
            continue;
        }
        // Cleared before looking, so a commit from now on sets the latch again.
        commit_wake::take_pending_wake();
        let now = Instant::now();
        let budgets: serde_json::Map<String, serde_json::Value> =
            buckets.iter_mut().map(|(id, b)| (id.to_string(), b.available(now).into())).collect();
        let version = guc::graph_api_version();
        let claimed = BackgroundWorker::transaction(AssertUnwindSafe(|| {
            // Until the extension is found. (Dropped while the worker runs, its statements
            // fail and the worker restarts, to wait for it again.)
            if !recovered && !store::use_extension_schema() {
                return None;
            }
            if !recovered {
                let wait = guc::resend_interrupted_after();
                let n = store::requeue_interrupted(wait);
                if n > 0 {
                    log!(
                        "whatsapp_channel: {n} message(s) interrupted by a restart are queued again; each is sent \
                         again in {} s unless Meta's status shows it was sent (whatsapp_channel.resend_interrupted_after)",
                        wait.as_secs()
                    );
                }
            }
            let claimed = keep_pair_rate(sendable(store::claim_due(free as i32, &version, budgets)), &mut pairs, now);
            // Media downloads share the senders: at most half of what is left, so that a
            // burst of photos never holds up the replies.
            let media_slots = (free - claimed.len()).div_ceil(2).min(MAX_DOWNLOADS.saturating_sub(downloads.len()));
            let media = if media_slots > 0 { store::claim_media(media_slots as i32, &version) } else { Vec::new() };
            // What is left: when the next queued message that could be sent falls due.
            let due = if claimed.len() + media.len() < free { store::next_due_in() } else { None };
            Some((claimed, media, due))
        }));
        let Some((claimed, media, due)) = claimed else {
            wait = IDLE; // not installed (yet): look again later
            continue;
        };
        if crate::pg::role::commit_may_be_lost() {
            // The postmaster died while the claim waited for the synchronous standby: after the
            // failover these messages are queued there, and the new primary sends them.
            warning!(
                "whatsapp_channel: the server is going down; {} claimed message(s) are left to the next primary",
                claimed.len()
            );
            return;
        }
        recovered = true;
        if statistics_checked.elapsed() >= STATISTICS_CHECK {
            // In a transaction of its own, after the claim: sends are not held up by it.
            statistics_checked = now;
            BackgroundWorker::transaction(|| store::analyze_if_stale("wa_messages"));
        }
        let base_url = guc::graph_api_url();
        for message in &claimed {
            let bucket = buckets
                .entry(message.channel_id)
                .or_insert_with(|| TokenBucket::per_second(message.max_per_second, now));
            bucket.set_rate(message.max_per_second, now);
            // Claims never exceed the budget the bucket gave, so there is always a token.
            let _ = bucket.try_take(now);
            pool.submit(Work::Send(Send {
                id: message.id,
                url: if message.marketing_messages {
                    graph_api::marketing_messages_url(&base_url, &message.graph_api_version, &message.phone_number_id)
                } else {
                    graph_api::messages_url(&base_url, &message.graph_api_version, &message.phone_number_id)
                },
                access_token: message.access_token.clone(),
                body: message.request.clone(),
                tag_with_id: message.kind != "mark_read",
            }));
        }
        let max_bytes = guc::max_media_bytes();
        let keep_content = guc::media_download() == guc::MediaDownload::Content;
        for job in media {
            pool.submit(Work::Download(Download {
                message_id: job.message_id,
                media_id: job.media_id.clone(),
                info_url: graph_api::media_info_url(
                    &base_url,
                    &job.graph_api_version,
                    &job.media_id,
                    &job.phone_number_id,
                ),
                access_token: job.access_token.clone(),
                expected_sha256: job.expected_sha256.clone(),
                max_bytes,
                keep_content,
            }));
            downloads.insert(job.message_id, job);
        }
        in_flight.extend(claimed.into_iter().map(|m| (m.id, m)));
        // A message due now that was not claimed waits for its channel's next token (or for a
        // send in flight to its recipient, whose end wakes us anyway): never spin on it.
        let refill = buckets.values().filter_map(|b| b.refill_in(now)).min();
        let due = due.map_or(IDLE, |s| Duration::from_secs_f64(s.clamp(0.0, IDLE.as_secs_f64())));
        wait = match refill {
            Some(r) => r.min(due).max(MIN_WAIT),
            None if due.is_zero() && in_flight.len() < SENDERS * 2 => MIN_WAIT,
            None => due,
        };
    }
    // Shutting down: record what Meta answers to the sends still in flight (for a few seconds),
    // so that those messages are not sent a second time at the next start.
    let deadline = std::time::Instant::now() + DRAIN;
    let mut sent = unrecorded_sends;
    while !in_flight.is_empty() && std::time::Instant::now() < deadline {
        for done in pool.finished() {
            if let Finished::Sent(id, r) = done {
                sent.extend(in_flight.remove(&id).map(|c| Answer::new(c, r)));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if !sent.is_empty() {
        record_all(sent, unrecorded_downloads, &mut outages);
    }
    // What is still in flight stays 'sending': at the next start it waits for Meta's status
    // (whatsapp_channel.resend_interrupted_after) rather than going out again at once.
}

/// A send's answer from Meta, to record, and how often recording it failed so far.
struct Answer {
    message: Claimed,
    result: SendResult,
    failed_records: u32,
}

impl Answer {
    fn new(message: Claimed, result: SendResult) -> Answer {
        Answer { message, result, failed_records: 0 }
    }
}

/// What of a claim may be sent: messages past their `expires_at` fail instead (not sent late),
/// and a probe of an unreachable channel puts its next probe off by one interval, so that one
/// probe at a time is in flight. Called in the claim's transaction.
fn sendable(claimed: Vec<Claimed>) -> Vec<Claimed> {
    let (expired, claimed): (Vec<Claimed>, Vec<Claimed>) = claimed.into_iter().partition(|m| m.expired);
    if !expired.is_empty() {
        store::expire(&expired.iter().map(|m| m.id).collect::<Vec<_>>());
        log!("whatsapp_channel: {} message(s) expired before they could be sent, failed", expired.len());
    }
    for probe in claimed.iter().filter(|m| m.probe) {
        store::channel_unreachable(probe.channel_id, std::time::SystemTime::now(), guc::outage_probe_every());
    }
    claimed
}

/// Meta's pair rate: past a burst, a message to the same customer goes back to the queue for
/// its turn instead of failing with 131056. Called in the claim's transaction, so a message is
/// never left claimed; returns what may be sent now.
fn keep_pair_rate(claimed: Vec<Claimed>, pairs: &mut PairLimit<(i64, String)>, now: Instant) -> Vec<Claimed> {
    claimed
        .into_iter()
        .filter(|m| {
            if m.kind == "mark_read" {
                return true; // a read receipt is not a message to the customer
            }
            match pairs.admit((m.channel_id, m.recipient.clone()), now) {
                Ok(()) => true,
                Err(wait) => {
                    store::defer(m.id, wait.as_secs_f64());
                    false
                }
            }
        })
        .collect()
}

/// Records answers and downloads in one transaction, and returns what could not be recorded,
/// to be recorded again on the next turn (never sent again). An answer that failed
/// [`MAX_FAILED_RECORDS`] times is recorded alone instead, as the message's failure with the
/// reason if need be (see [`record_alone`]), so that nothing is tried forever. A COMMIT that
/// fails (a user's deferred trigger, say) keeps everything for the next turn; the worker goes on.
fn record_all(
    sent: Vec<Answer>,
    fetched: Vec<(MediaJob, DownloadResult)>,
    outages: &mut Outages,
) -> (Vec<Answer>, Vec<(MediaJob, DownloadResult)>) {
    let (stubborn, sent): (Vec<Answer>, Vec<Answer>) =
        sent.into_iter().partition(|a| a.failed_records >= MAX_FAILED_RECORDS);
    for answer in stubborn {
        record_alone(answer, outages);
    }
    let committed = transaction::run(|| record_in_transaction(&sent, &fetched, outages));
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
            warning!(
                "whatsapp_channel: the results of {} send(s) did not commit; they will be recorded again, not sent again: {e}",
                sent.len()
            );
            ((0..sent.len()).collect(), (0..fetched.len()).collect())
        }
    };
    let left_sends = sent
        .into_iter()
        .enumerate()
        .filter(|(i, _)| failed_sends.contains(i))
        .map(|(_, a)| Answer { failed_records: a.failed_records + 1, ..a })
        .collect();
    let left_downloads =
        fetched.into_iter().enumerate().filter(|(i, _)| failed_downloads.contains(i)).map(|(_, d)| d).collect();
    (left_sends, left_downloads)
}

/// Times an answer may fail to be recorded with the others before it is recorded alone.
const MAX_FAILED_RECORDS: u32 = 3;
/// How soon a turn comes back to answers that could not be recorded.
const RECORD_AGAIN: Duration = Duration::from_secs(1);

/// What one recording transaction did: the indexes of what it could not record, and the
/// metrics to publish once it has committed.
#[derive(Default)]
struct Recorded {
    failed_sends: Vec<usize>,
    failed_downloads: Vec<usize>,
    counted: Vec<(i64, ChannelCounter)>,
    downloads: Vec<GlobalCounter>,
}

/// The sends Meta accepted (nearly all) in one statement; if that fails, each answer in its own
/// subtransaction, as are the others (retries, failures) and the downloads, so that one bad row
/// costs only itself.
fn record_in_transaction(sent: &[Answer], fetched: &[(MediaJob, DownloadResult)], outages: &mut Outages) -> Recorded {
    let mut out = Recorded::default();
    let together: Vec<(i64, Option<&str>)> =
        sent.iter().filter_map(|a| Some((a.message.id, accepted_wamid(&a.result)?))).collect();
    let together_stored = !together.is_empty() && subtransaction::run(|| store::mark_sent(&together)).is_ok();
    for (i, answer) in sent.iter().enumerate() {
        if together_stored && accepted_wamid(&answer.result).is_some() {
            outages.answered(&answer.message);
            out.counted.push((answer.message.channel_id, ChannelCounter::SendSent));
            continue;
        }
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
    let attempts = u32::try_from(message.attempts).unwrap_or(u32::MAX);
    let outage = matches!(result, SendResult::Transport(_)) || graph_api::is_outage(&error);
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
    let class = match (result, retry) {
        (SendResult::Transport(_), _) => ChannelCounter::ErrorTransport,
        (_, Retry::Credentials) => ChannelCounter::ErrorCredentials,
        (_, Retry::PairLimit) => ChannelCounter::ErrorPairLimit,
        (_, Retry::Few) => ChannelCounter::ErrorFew,
        (_, Retry::Never) => ChannelCounter::ErrorPermanent,
        (_, Retry::Backoff) if error.code.is_some_and(|c| graph_api::THROTTLES.contains(&c)) => {
            ChannelCounter::ErrorThrottle
        }
        (_, Retry::Backoff) => ChannelCounter::ErrorTransient,
    };
    let result = match retry {
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
            retry_later(message, &error, retry, retry_after, code, attempts);
            ChannelCounter::SendRetried
        }
        Retry::Few if attempts < graph_api::FEW_ATTEMPTS => {
            retry_later(message, &error, retry, retry_after, code, attempts);
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
    };
    vec![result, class]
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
    let backoff = graph_api::backoff(retry, attempts, jitter(message.id, attempts));
    let delay = retry_after.map_or(backoff, |r| r.max(backoff));
    log!(
        "whatsapp_channel: message {} not sent (attempt {attempts}): {}; retrying in {:.1}s",
        message.id,
        error.message,
        delay.as_secs_f64()
    );
    store::mark_retry(message.id, delay.as_secs_f64(), code, &error.message, error.details.as_deref());
}

/// Attempts at a media download before it is given up (about 10 minutes of backoff).
const MAX_MEDIA_ATTEMPTS: u32 = 10;

/// Records one download's result; returns what it counts for the metrics.
fn record_download(job: &MediaJob, result: &DownloadResult) -> GlobalCounter {
    let attempts = u32::try_from(job.attempts).unwrap_or(u32::MAX);
    match result {
        DownloadResult::Done { mime_type, sha256, content, size } => {
            store::finish_media(
                job.message_id,
                "done",
                mime_type.as_deref(),
                Some(sha256),
                Some(*size),
                content.as_deref(),
                None,
                None,
            );
            GlobalCounter::MediaDownloaded
        }
        DownloadResult::Skipped { mime_type, size, why } => {
            store::finish_media(job.message_id, "skipped", mime_type.as_deref(), None, *size, None, Some(why), None);
            GlobalCounter::MediaSkipped
        }
        DownloadResult::Retry(why) if attempts < MAX_MEDIA_ATTEMPTS => {
            let delay = graph_api::backoff(Retry::Backoff, attempts, jitter(job.message_id, attempts));
            store::finish_media(
                job.message_id,
                "pending",
                None,
                None,
                None,
                None,
                Some(why),
                Some(delay.as_secs_f64()),
            );
            GlobalCounter::MediaRetried
        }
        DownloadResult::Retry(why) | DownloadResult::Failed(why) => {
            let why = if matches!(result, DownloadResult::Retry(_)) {
                format!("gave up after {attempts} attempts: {why}")
            } else {
                why.clone()
            };
            warning!("whatsapp_channel: the media of message {} was not downloaded: {why}", job.message_id);
            store::finish_media(job.message_id, "failed", None, None, None, None, Some(&why), None);
            GlobalCounter::MediaFailed
        }
    }
}

/// A spread in [0, 1) that differs per message and attempt, without a random number source.
fn jitter(id: i64, attempt: u32) -> f64 {
    let x = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(attempt).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x >> 11) as f64 / (1u64 << 53) as f64
}
