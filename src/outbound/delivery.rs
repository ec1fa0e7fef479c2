//! The delivery worker: sends queued outbound messages. Woken at the commit of a transaction
//! that queued messages ([`crate::pg::commit_wake`]), and by its own timer for retries that fall due.
//!
//! Each turn of the loop records the answers that came back and claims as many due messages
//! as there are free senders (status `sending`), in one transaction, then hands them to the
//! [`SenderPool`] after COMMIT. Per channel, a token bucket keeps to its
//! `max_messages_per_second`; while a backlog waits for tokens, turns are 25 ms apart.
//! A crash between a claim and its record leaves rows in `sending`. They go back to the queue
//! at start, but wait `whatsapp_channel.resend_interrupted_after` first: every send carries its
//! outbox id in `biz_opaque_callback_data`, and a status that echoes it records the send (see
//! `_wa_receive_statuses`), so only a message that heard nothing is sent again. A channel the
//! Graph API does not answer waits and probes ([`crate::outbound::outages`]).

use super::actions::{self, ActionAnswer, ClaimedAction};
use super::outages::Outages;
use super::recording::{Answer, RECORD_AGAIN, Recording, Unrecorded, got_no_answer, record_all};
use super::sender_pool::{ActionResult, Finished, Send, SenderPool, Work};
use super::store::{self, Claimed, GraphEndpoint, OutboxAction};
use crate::maintenance::store::analyze_if_stale;
use crate::media::download::Download;
use crate::media::store::{self as media, MediaJob};
use crate::pg::commit_wake::{SideQueue, SingleWorker};
use crate::pg::extension::use_extension_schema;
use crate::pg::{activity, commit_wake, guc, role, thread_wake, transaction, worker};
use crate::{log, warning};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};
use whatsapp_cloud::graph_api;
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
/// Shortest time between two turns while a backlog waits for its channels' tokens and no
/// commit queued anything since. Finished sends wake the worker hundreds of times a second
/// then, and each turn could claim only the few tokens that came back since the last, at the
/// full cost of a turn: one channel at its 1,000 messages a second cost about 550 µs of the
/// main thread a message, 235 µs with turns 25 ms apart (measured on two million messages).
/// A bucket holds a second of tokens, so none is lost waiting, and the rate is the same.
const BACKLOG_TURN: Duration = Duration::from_millis(25);
/// Shortest time between two turns when nothing is due and no commit queued anything since the
/// last: a turn then only records finished sends. At 200 commits a second, each send cost two
/// turns, one to claim it and one to record it 50 ms later, each with its COMMIT and WAL flush;
/// waiting this long, the recording joins the next commit's turn, and a slower flow loses
/// nothing (the last turn is older than this). A commit ends the wait at once.
const RECORD_TURN: Duration = Duration::from_millis(10);

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn wa_delivery_main(_arg: pg_sys::Datum) {
    let Some(_database) = worker::start_single(SingleWorker::Delivery) else { return };
    let (waker, mut wakeups) = thread_wake::pair();
    let mut delivery = Delivery::new(SenderPool::start(SENDERS, guc::graph_api_timeout(), waker));
    // Wakes at a commit that queued messages, when a send finishes, or when a retry or a
    // channel's next token falls due; never polls.
    loop {
        activity::idle(&format!("{} sends in flight, waiting for queued messages", delivery.in_flight.len()));
        if !wakeups.wait(delivery.sleep()) {
            break;
        }
        activity::busy(&format!(
            "recording results and claiming due messages ({} in flight)",
            delivery.in_flight.len()
        ));
        if !delivery.keep_turn_spacing(&mut wakeups) {
            break;
        }
        if worker::reload_if_asked() {
            delivery.pool.set_timeout(guc::graph_api_timeout());
        }
        let results = delivery.take_results();
        if delivery.turn(results) == Turn::ServerGoingDown {
            return;
        }
    }
    delivery.drain();
}

/// How a turn ended.
#[derive(PartialEq, Eq)]
enum Turn {
    Done,
    /// The postmaster died while a claim waited for the synchronous standby: after the
    /// failover those messages are queued there, and the new primary sends them.
    ServerGoingDown,
}

/// What one claim's transaction found.
#[derive(Default)]
struct Claim {
    /// Whether the queue was looked at: a turn that only records accepted sends looks only if
    /// one of their customers has another message queued (see `must_look` in
    /// [`Delivery::turn`]); the rest of this is empty then.
    looked: bool,
    /// Whether the claim took as much as the free senders could take: more may be due.
    filled: bool,
    messages: Vec<Claimed>,
    media: Vec<MediaJob>,
    /// Claimed only when actions were looked for (see `Delivery::action_due_at`).
    actions: Vec<ClaimedAction>,
    /// Seconds until the next queued action falls due, when actions were looked for: `None`
    /// then means there is none.
    next_action_in: Option<Option<f64>>,
    /// The same for media downloads, when media was looked for.
    next_media_in: Option<Option<f64>>,
    /// Seconds until the next queued message falls due, if the claim left any.
    next_due_in: Option<f64>,
}

/// The delivery worker's state between turns.
struct Delivery {
    pool: SenderPool,
    in_flight: HashMap<i64, Claimed>,
    downloads: HashMap<i64, MediaJob>,
    actions: HashMap<i64, ClaimedAction>,
    unrecorded: Unrecorded,
    unrecorded_actions: Vec<ActionAnswer>,
    /// When the next queued action falls due, as last looked up (`None`: none is queued). Actions
    /// are looked for only then, when a commit queued one, or after one was recorded: a turn
    /// that claims messages costs no query more for them.
    action_due_at: Option<Instant>,
    /// The same for media downloads: when one is due, as last looked up, or now after a commit
    /// stored media or a download ended.
    media_due_at: Option<Instant>,
    /// Per channel: its `max_messages_per_second`.
    buckets: HashMap<i64, TokenBucket>,
    /// Meta's pair rate: per channel and recipient.
    pairs: PairLimit<(i64, String)>,
    outages: Outages,
    /// Whether the sends a restart interrupted went back to the queue (once, at start).
    recovered: bool,
    wait: Duration,
    /// The last claim left messages due that only their channels' tokens held back.
    backlogged: bool,
    /// When the queue must be looked at again, commit or not: the next due time the last claim
    /// saw (a retry, a scheduled message, a channel's next token), or [`IDLE`] after it.
    look_again_at: Instant,
    /// The last claim took as much as the free senders could take (see [`Claim::filled`]).
    claim_filled: bool,
    last_turn: Instant,
    statistics_checked: Instant,
}

impl Delivery {
    fn new(pool: SenderPool) -> Delivery {
        Delivery {
            pool,
            in_flight: HashMap::new(),
            downloads: HashMap::new(),
            actions: HashMap::new(),
            unrecorded: Unrecorded::default(),
            unrecorded_actions: Vec::new(),
            action_due_at: None,
            // (The first claim looks: downloads a restart interrupted go back to the queue.)
            media_due_at: Some(Instant::now()),
            buckets: HashMap::new(),
            pairs: PairLimit::default(),
            outages: Outages::default(),
            recovered: false,
            wait: Duration::ZERO,
            backlogged: false,
            look_again_at: Instant::now(),
            claim_filled: false,
            last_turn: Instant::now(),
            statistics_checked: Instant::now(),
        }
    }

    /// How long to sleep: not at all if a commit queued messages meanwhile and a sender is free
    /// to take them (see [`Delivery::commit_to_claim`]); at most [`RECORD_AGAIN`] while answers
    /// wait to be recorded again.
    fn sleep(&self) -> Duration {
        if self.commit_to_claim() {
            Duration::ZERO
        } else if !self.unrecorded.is_empty() || !self.unrecorded_actions.is_empty() {
            self.wait.min(RECORD_AGAIN)
        } else {
            self.wait
        }
    }

    /// At most one turn per [`MIN_TURN`]; per [`BACKLOG_TURN`] while a backlog waits for tokens,
    /// and per [`RECORD_TURN`] while the next turn would only record (see [`Delivery::must_look`]);
    /// a commit that queues something ends those waits at once. Returns false once SIGTERM has
    /// arrived.
    fn keep_turn_spacing(&mut self, wakeups: &mut thread_wake::Wakeups) -> bool {
        loop {
            let now = Instant::now();
            let spacing = if self.commit_to_claim() {
                MIN_TURN
            } else if self.backlogged {
                BACKLOG_TURN
            } else if !self.must_look(now, false) {
                RECORD_TURN
            } else {
                MIN_TURN
            };
            let Some(rest) = spacing.checked_sub(self.last_turn.elapsed()) else { break };
            // (Never past the time the last claim gave.)
            let rest =
                if spacing == RECORD_TURN { rest.min(self.look_again_at.saturating_duration_since(now)) } else { rest };
            if spacing == MIN_TURN {
                std::thread::sleep(rest);
            } else if !wakeups.wait(rest.max(MIN_TURN)) {
                // (Woken by a commit, or a finished send; in whole milliseconds, at least one.)
                return false;
            }
        }
        self.last_turn = Instant::now();
        true
    }

    /// What the senders finished, with what could not be recorded before, to record in this
    /// turn's transaction. (Actions are recorded here, in a transaction of their own: they are
    /// few.)
    fn take_results(&mut self) -> Unrecorded {
        let mut results = std::mem::take(&mut self.unrecorded);
        let now = Instant::now();
        let mut acted = std::mem::take(&mut self.unrecorded_actions);
        for done in self.pool.finished() {
            match done {
                Finished::Sent(id, r) => {
                    let Some(message) = self.in_flight.remove(&id) else { continue };
                    // A send that got no answer is retried as unsent: it does not count against
                    // the customer's pair rate. Otherwise an outage's probes and retries would run
                    // up minutes of pair debt, and the first answer, instead of resuming the
                    // queue, would find each customer's messages deferred for it. (Read
                    // receipts took no quota; one message per customer is in flight at a time,
                    // so this is the quota that message took.)
                    if message.kind == OutboxAction::Message && got_no_answer(&r) {
                        self.pairs.refund(&(message.channel_id, message.recipient.clone()), now);
                    }
                    results.sends.push(Answer::new(message, r));
                }
                Finished::Downloaded(id, r) => results.downloads.extend(self.downloads.remove(&id).map(|j| (j, r))),
                Finished::Acted(id, r) => acted.extend(self.actions.remove(&id).map(|a| ActionAnswer {
                    action: a,
                    result: r,
                    failed_records: 0,
                })),
            }
        }
        if !results.downloads.is_empty() {
            // A slot is free, and a download this turn records (again, if recording it failed
            // before) may be due for a retry: the turn looks for media once it is recorded.
            self.media_due_at = Some(now);
        }
        if !acted.is_empty() {
            self.unrecorded_actions = actions::record_all(acted);
            // A retry, or the next action of the same target, may be due: look at the next turn.
            self.action_due_at = Some(Instant::now());
        }
        results
    }

    /// Records the turn's results and claims what is due for the free senders, in one
    /// transaction, then hands the claim to the senders and works out how long to wait for the
    /// next turn.
    fn turn(&mut self, results: Unrecorded) -> Turn {
        let recording = Recording::new(results, &mut self.outages);
        let free = self.free_senders();
        if free == 0 {
            self.record(recording);
            self.wait = IDLE; // a finished send wakes us
            (self.claim_filled, self.backlogged) = (true, false);
            return Turn::Done;
        }
        // Cleared before looking, so a commit from now on sets the latch again.
        let committed = commit_wake::take_pending_wake();
        let now = Instant::now();
        // A commit that queued an action or stored media makes it due now.
        if commit_wake::take_side_queue_wake(SideQueue::Actions) {
            self.action_due_at = Some(now);
        }
        if commit_wake::take_side_queue_wake(SideQueue::Media) {
            self.media_due_at = Some(now);
        }
        let must_look = self.must_look(now, committed);
        let request = ClaimRequest::new(self, free, now, must_look);
        let Some(claim) = self.record_and_claim(recording, request) else {
            self.wait = IDLE; // not installed (yet): look again later
            return Turn::Done;
        };
        if role::commit_may_be_lost() {
            warning!(
                "whatsapp_channel: the server is going down; {} claimed message(s) are left to the next primary",
                claim.messages.len()
            );
            return Turn::ServerGoingDown;
        }
        if !claim.looked {
            self.wait = self.look_again_at.saturating_duration_since(Instant::now());
            return Turn::Done;
        }
        self.recovered = true;
        self.claim_filled = claim.filled;
        if self.statistics_checked.elapsed() >= STATISTICS_CHECK {
            // In a transaction of its own, after the claim: sends are not held up by it.
            self.statistics_checked = now;
            BackgroundWorker::transaction(|| analyze_if_stale("wa_messages"));
        }
        if let Some(next) = claim.next_action_in {
            self.action_due_at = next.map(|s| now + due_in(s));
        }
        if let Some(next) = claim.next_media_in {
            // (At the latest IDLE from now, as the queue's safety net: media stored without a wake.)
            self.media_due_at = Some(now + next.map_or(IDLE, due_in));
        }
        self.submit_actions(claim.actions);
        self.submit(claim.messages, claim.media, now);
        self.wait = self.next_wait(claim.next_due_in, now);
        // (From the turn's start, as `wait` is: the turn's own time is not added to it.)
        self.look_again_at = now + self.wait;
        // (As of `now`, when the budgets were read: the claim's own time refilled the buckets.)
        self.backlogged =
            claim.next_due_in.is_some_and(|s| s <= 0.0) && self.buckets.values().any(|b| b.refill_in(now).is_some());
        Turn::Done
    }

    /// Room for more claimed work: up to twice [`SENDERS`] sends, downloads and actions are in
    /// the pool at once, running or waiting for a thread.
    fn free_senders(&self) -> usize {
        (SENDERS * 2).saturating_sub(self.in_flight.len() + self.downloads.len() + self.actions.len())
    }

    /// A commit queued something, and a sender is free to take it. With none free, the commit
    /// waits for the next finished send (which wakes the worker): turning at once would find no
    /// sender again, every [`MIN_TURN`], until one finished.
    fn commit_to_claim(&self) -> bool {
        commit_wake::wake_pending() && self.free_senders() > 0
    }

    /// When to look for media downloads: never while all [`MAX_DOWNLOADS`] are in flight (one
    /// that ends frees a slot and wakes the worker), so that a download due but not claimable
    /// does not have the worker look every turn.
    fn media_look_at(&self) -> Option<Instant> {
        self.media_due_at.filter(|_| self.downloads.len() < MAX_DOWNLOADS)
    }

    /// Whether actions may be due (a commit queued one, one was recorded, or one falls due).
    fn actions_due(&self, now: Instant) -> bool {
        self.action_due_at.is_some_and(|at| at <= now)
    }

    /// Whether a media download may be due and could be claimed (see [`Delivery::media_look_at`]).
    fn media_due(&self, now: Instant) -> bool {
        self.media_look_at().is_some_and(|at| at <= now)
    }

    /// Whether the queue may hold a message the last claim could not see or take, whatever the
    /// turn records: a commit (that queued, retried or resumed something), actions or media, the
    /// first turn, a full last claim, or the time it said something falls due. (A status that
    /// records an interrupted send as sent wakes the worker as a commit does:
    /// _wa_receive_statuses.)
    /// Otherwise a turn that records only accepted sends does not claim, unless one of their
    /// customers has another message queued (see Recorded::may_free_a_message): at 200 sends a
    /// second those are half the turns, and the claim was most of a turn's cost.
    fn must_look(&self, now: Instant, committed: bool) -> bool {
        committed
            || self.actions_due(now)
            || self.media_due(now)
            || !self.recovered
            || self.claim_filled
            // (The latch's timeout is in whole milliseconds, rounded down: due within one is due.)
            || self.look_again_at <= now + MIN_TURN
    }

    /// Records results in a transaction of their own (a turn that claims nothing).
    fn record(&mut self, recording: Recording) {
        if !recording.is_empty() {
            self.unrecorded = recording.record_on_its_own(&mut self.outages);
            unsafe { pg_sys::pgstat_report_stat(false) };
        }
    }

    /// One transaction: the results recorded, then the claim (see [`claim_due`]): one COMMIT,
    /// and one WAL flush, a turn instead of two. If that transaction fails, the turn is done
    /// again in two, results first, as before: a claim that fails must never take the results
    /// with it (an ERROR in a claim ends the worker, and results lost with it would wait for
    /// Meta's statuses). `None` while the extension is not installed.
    fn record_and_claim(&mut self, recording: Recording, request: ClaimRequest) -> Option<Claim> {
        let (outages, pairs) = (&mut self.outages, &mut self.pairs);
        let together = transaction::run(|| {
            let recorded = recording.record(outages);
            let look = request.must_look || recorded.may_free_a_message();
            (recorded, if look { claim_due(&request, pairs) } else { Some(Claim::default()) })
        });
        match together {
            Ok((recorded, claim)) => {
                self.unrecorded = recording.committed(Ok(recorded));
                unsafe { pg_sys::pgstat_report_stat(false) };
                claim
            }
            Err(e) if role::commit_may_be_lost() => {
                self.unrecorded = recording.committed(Err(e));
                Some(Claim::default()) // the caller stops
            }
            Err(e) => {
                recording.did_not_commit(&e);
                self.record(recording);
                let pairs = &mut self.pairs;
                BackgroundWorker::transaction(AssertUnwindSafe(|| claim_due(&request, pairs)))
            }
        }
    }

    /// Hands claimed messages and downloads to the senders; each message takes a token of its
    /// channel's bucket.
    fn submit(&mut self, messages: Vec<Claimed>, media: Vec<MediaJob>, now: Instant) {
        let base_url = guc::graph_api_url();
        for message in messages {
            let bucket = self
                .buckets
                .entry(message.channel_id)
                .or_insert_with(|| TokenBucket::per_second(message.max_per_second, now));
            bucket.set_rate(message.max_per_second, now);
            // Claims never exceed the budget the bucket gave, so there is always a token.
            let _ = bucket.try_take(now);
            self.pool.submit(Work::Send(send_of(&message, &base_url)));
            self.in_flight.insert(message.id, message);
        }
        let max_bytes = guc::max_media_bytes();
        let keep_content = guc::media_download() == guc::MediaDownload::Content;
        for job in media {
            self.pool.submit(Work::Download(Download::of(&job, &base_url, max_bytes, keep_content)));
            self.downloads.insert(job.message_id, job);
        }
    }

    /// Hands claimed actions to the senders; one whose request cannot be made is recorded as
    /// failed at the next turn.
    fn submit_actions(&mut self, claimed: Vec<ClaimedAction>) {
        if claimed.is_empty() {
            return;
        }
        let base_url = guc::graph_api_url();
        for action in claimed {
            match action.request(&base_url) {
                Ok(request) => {
                    self.pool.submit(Work::Action(request));
                    self.actions.insert(action.id, action);
                }
                Err(reason) => self.unrecorded_actions.push(ActionAnswer {
                    action,
                    result: ActionResult::Invalid(reason),
                    failed_records: 0,
                }),
            }
        }
    }

    /// A message due now that was not claimed waits for its channel's next token (or for a
    /// send in flight to its recipient, whose end wakes us anyway): never spin on it.
    fn next_wait(&self, next_due_in: Option<f64>, now: Instant) -> Duration {
        let refill = self.buckets.values().filter_map(|b| b.refill_in(now)).min();
        let due = next_due_in.map_or(IDLE, due_in);
        let due = self.action_due_at.map_or(due, |at| due.min(at.saturating_duration_since(now)));
        let due = self.media_look_at().map_or(due, |at| due.min(at.saturating_duration_since(now)));
        match refill {
            Some(r) => r.min(due).max(MIN_WAIT),
            None if due.is_zero() && self.free_senders() > 0 => MIN_WAIT,
            None => due,
        }
    }

    /// Shutting down: records what Meta answers to the sends still in flight (for a few
    /// seconds), so that those messages are not sent a second time at the next start. What is
    /// still in flight after that stays `sending`: at the next start it waits for Meta's status
    /// (whatsapp_channel.resend_interrupted_after) rather than going out again at once.
    fn drain(mut self) {
        let deadline = Instant::now() + DRAIN;
        let mut results = std::mem::take(&mut self.unrecorded);
        let mut acted = std::mem::take(&mut self.unrecorded_actions);
        while !(self.in_flight.is_empty() && self.actions.is_empty()) && Instant::now() < deadline {
            for done in self.pool.finished() {
                match done {
                    Finished::Sent(id, r) => {
                        results.sends.extend(self.in_flight.remove(&id).map(|c| Answer::new(c, r)))
                    }
                    Finished::Acted(id, r) => acted.extend(self.actions.remove(&id).map(|a| ActionAnswer {
                        action: a,
                        result: r,
                        failed_records: 0,
                    })),
                    Finished::Downloaded(..) => {}
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if !results.is_empty() {
            record_all(results, &mut self.outages);
        }
        actions::record_all(acted);
    }
}

/// What a claim asks for, read from the worker's state before its transaction.
struct ClaimRequest {
    /// Free senders.
    free: usize,
    now: Instant,
    actions_due: bool,
    /// Whether media downloads are looked for (see `Delivery::media_due`).
    media_due: bool,
    /// Whether to claim whatever the turn records (see `must_look` in [`Delivery::turn`]).
    must_look: bool,
    /// Whether the sends a restart interrupted went back to the queue already.
    recovered: bool,
    downloads: usize,
    version: String,
    /// Per channel: the tokens its bucket has now (see _wa_claim_due).
    budgets: serde_json::Map<String, serde_json::Value>,
}

impl ClaimRequest {
    fn new(delivery: &mut Delivery, free: usize, now: Instant, must_look: bool) -> ClaimRequest {
        ClaimRequest {
            free,
            now,
            actions_due: delivery.actions_due(now),
            media_due: delivery.media_due(now),
            must_look,
            recovered: delivery.recovered,
            downloads: delivery.downloads.len(),
            version: guc::graph_api_version(),
            budgets: delivery.buckets.iter_mut().map(|(id, b)| (id.to_string(), b.available(now).into())).collect(),
        }
    }
}

/// In the caller's transaction: at the first turn, what a restart interrupted goes back to the
/// queue; then up to `free` due messages within their channels' budgets, and media downloads.
/// `None` while the extension is not installed.
fn claim_due(request: &ClaimRequest, pairs: &mut PairLimit<(i64, String)>) -> Option<Claim> {
    let ClaimRequest { free, now, actions_due, media_due, recovered, downloads, ref version, ref budgets, .. } =
        *request;
    // Until the extension is found. (Dropped while the worker runs, its statements fail and
    // the worker restarts, to wait for it again.)
    if !recovered && !use_extension_schema() {
        return None;
    }
    if !recovered {
        requeue_interrupted();
        actions::requeue_interrupted();
    }
    // Actions first, while they are due: they are few, and an agent waits on them.
    let (actions, next_action_in) = if actions_due || !recovered {
        let claimed = actions::claim((free / 2).max(1) as i32, version);
        (claimed, Some(actions::next_due_in()))
    } else {
        (Vec::new(), None)
    };
    let free = free - actions.len().min(free);
    let messages = keep_pair_rate(sendable(store::claim_due(free as i32, version, budgets.clone())), pairs, now);
    // Media downloads share the senders: at most half of what is left, so that a burst of
    // photos never holds up the replies. Looked for only when some may be due (a commit stored
    // media, a download ended, a retry's time came): at 200 messages a second, the claim of
    // media at every turn that claims messages was 85 µs of its 0.75 ms (pg_stat_statements).
    let media_slots = (free - messages.len()).div_ceil(2).min(MAX_DOWNLOADS.saturating_sub(downloads));
    let (media, next_media_in) = if media_due && media_slots > 0 {
        let claimed = media::claim_media(media_slots as i32, version);
        // (All the slots taken: more may be due now.)
        let next = if claimed.len() == media_slots { Some(0.0) } else { media::next_due_in() };
        (claimed, Some(next))
    } else {
        (Vec::new(), None)
    };
    // What is left: when the next queued message that could be sent falls due.
    let filled = messages.len() + media.len() >= free;
    let next_due_in = if filled { None } else { store::next_due_in() };
    Some(Claim { looked: true, filled, messages, media, actions, next_action_in, next_media_in, next_due_in })
}

/// Claimed messages and downloads that a restart interrupted go back to their queues; the
/// messages fall due after `whatsapp_channel.resend_interrupted_after` (see
/// _wa_requeue_interrupted), or when a status records them as sent (which wakes this worker:
/// their customers' next messages may go then). Called in the first claim's transaction.
fn requeue_interrupted() {
    media::requeue_interrupted();
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

/// How long until something the database says is due in `seconds` (negative: overdue): now at
/// the soonest, [`IDLE`] at the latest.
fn due_in(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds.clamp(0.0, IDLE.as_secs_f64()))
}

/// The request for a claimed message.
fn send_of(message: &Claimed, base_url: &str) -> Send {
    let (version, number) = (&message.graph_api_version, &message.phone_number_id);
    Send {
        id: message.id,
        url: match message.endpoint {
            GraphEndpoint::Messages => graph_api::messages_url(base_url, version, number),
            GraphEndpoint::MarketingMessages => graph_api::marketing_messages_url(base_url, version, number),
        },
        access_token: message.access_token.clone(),
        body: message.request.clone(),
        tag_with_id: message.kind == OutboxAction::Message,
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
            if m.kind == OutboxAction::ReadReceipt {
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
