//! The inbound path. [`http`]'s threads read, verify and parse requests and never call
//! Postgres; [`listener`], the worker's main thread, stores what they hand over and answers
//! after COMMIT. This module says what storing a verified webhook means, for the listener (live
//! POSTs) and `wa_replay_webhook_events()` (stored POSTs, after an upgrade that parses more):
//! one write path, set-based for a batch and the same for a single item. Everything is keyed by
//! Meta's ids, so storing the same payload again adds nothing.

pub mod http;
pub mod listener;

use crate::metrics;
use crate::pg::subtransaction::{self, Cause};
use crate::store;
use pgrx::prelude::*;
use std::collections::HashMap;
use whatsapp_cloud::webhook::{
    Call, Contact, ContactSync, Echo, GroupEvent, HistoryMessage, Message, Payload, Status, UserIdUpdate,
};

/// What `wa_channel_counters` counts per channel (its `kind` column): what the listener saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CounterKind {
    /// A signed POST whose items were all stored.
    Stored,
    /// A signed POST with items refused for their own content (kept raw, acknowledged).
    Partial,
    /// A signed POST with items not stored for a database reason (answered 500, replayed).
    Incomplete,
    /// A signed POST that is not a webhook payload at all.
    InvalidPayload,
    /// Updates for a phone number no channel of the app has (kept raw only).
    Unrouted,
    SignatureMismatch,
    Verified,
    VerifyTokenMismatch,
}

impl CounterKind {
    /// The `kind` column's value.
    pub fn as_sql(self) -> &'static str {
        match self {
            CounterKind::Stored => "stored",
            CounterKind::Partial => "partial",
            CounterKind::Incomplete => "incomplete",
            CounterKind::InvalidPayload => "invalid_payload",
            CounterKind::Unrouted => "unrouted",
            CounterKind::SignatureMismatch => "signature_mismatch",
            CounterKind::Verified => "verified",
            CounterKind::VerifyTokenMismatch => "verify_token_mismatch",
        }
    }

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
            let _ = subtransaction::run(|| store::count(*channel_id, kind.as_sql(), detail.as_deref(), *n));
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

/// What storing one payload found, beyond the rows themselves.
#[derive(Default)]
pub struct Stored {
    /// Items refused for their own content (each rolled back alone), with the reason: kept raw
    /// in the event and counted, and the POST is acknowledged (the same bytes cannot do better).
    pub problems: Vec<String>,
    /// Items that could not be stored for a database reason (see [`Cause::Database`]), with
    /// the reason: the POST is answered 500 so that Meta sends it again, and its event is kept
    /// `incomplete` until a replay stores them. What was stored stays stored.
    pub unstored: Vec<String>,
    /// `phone_number_id`s of changes no channel of this app has: kept raw in the event only.
    pub unrouted: Vec<String>,
    pub new_messages: i64,
    pub new_statuses: i64,
}

impl Stored {
    /// Files a failed item under its cause.
    fn failed(&mut self, what: String, failure: subtransaction::Failure) {
        let line = format!("{what}: {}", failure.message);
        match failure.cause {
            Cause::Content => self.problems.push(line),
            Cause::Database => self.unstored.push(line),
        }
    }

    /// What the event's `outcome` column says of this.
    pub fn outcome(&self) -> store::EventOutcome {
        if !self.unstored.is_empty() {
            store::EventOutcome::Incomplete
        } else if !self.problems.is_empty() {
            store::EventOutcome::Partial
        } else {
            store::EventOutcome::Stored
        }
    }

    /// The event's `error` column: every item not stored, and why.
    pub fn summary(&self) -> Option<String> {
        let all: Vec<&str> = self.unstored.iter().chain(&self.problems).map(String::as_str).collect();
        (!all.is_empty()).then(|| all.join("; "))
    }
}

/// One message, status, echo or BSUID change of a payload, with the channel it was routed to.
pub enum Item<'a> {
    Message {
        channel_id: i64,
        message: &'a Message,
        sender: Option<&'a Contact>,
    },
    Status {
        channel_id: i64,
        status: &'a Status,
    },
    /// A message the business sent from the WhatsApp Business app: an outbound row.
    Echo {
        channel_id: i64,
        echo: &'a Echo,
    },
    /// A customer's BSUID changed: the contact moves to the new one and keeps the old.
    UserIdUpdate {
        channel_id: i64,
        update: &'a UserIdUpdate,
    },
    /// A call rang or ended.
    Call {
        channel_id: i64,
        call: &'a Call,
    },
    /// A group was created, changed, joined, left, suspended or deleted.
    Group {
        channel_id: i64,
        event: &'a GroupEvent,
    },
    /// A message of the chat history a coexistence number shared (or its media, later).
    History {
        channel_id: i64,
        message: &'a HistoryMessage,
    },
    /// A contact saved in or removed from the WhatsApp Business app.
    ContactSync {
        channel_id: i64,
        contact: &'a ContactSync,
    },
}

impl Item<'_> {
    /// How a problem with this item is reported.
    fn describe(&self) -> String {
        match self {
            Item::Message { message, .. } => format!("message {}", message.wamid),
            Item::Status { status, .. } => format!("status {} of {}", status.status, status.wamid),
            Item::Echo { echo, .. } => format!("message echo {}", echo.message.wamid),
            Item::UserIdUpdate { update, .. } => format!("user_id_update to {}", update.current),
            Item::Call { call, .. } => format!("call {} {}", call.call_id, call.event),
            Item::Group { event, .. } => format!("{} of group {}", event.kind, event.group_id),
            Item::History { message, .. } => format!("history message {}", message.message.wamid),
            Item::ContactSync { contact, .. } => format!("contact sync {} of {}", contact.action, contact.wa_id),
        }
    }
}

/// The messages and statuses of `payload` routed to their channels (see
/// [`http::route`]), in order; and the `phone_number_id`s no channel of this app
/// has. Template status changes are not items (see [`store_payload`]).
pub fn items<'a>(payload: &'a Payload, route: impl Fn(Option<&str>) -> Option<i64>) -> (Vec<Item<'a>>, Vec<String>) {
    let mut items = Vec::new();
    let mut unrouted = Vec::new();
    for change in payload.changes.iter().filter(|c| c.template_status.is_none()) {
        let Some(channel_id) = route(change.phone_number_id.as_deref()) else {
            if !change.messages.is_empty()
                || !change.statuses.is_empty()
                || !change.echoes.is_empty()
                || !change.user_id_updates.is_empty()
                || !change.calls.is_empty()
                || !change.groups.is_empty()
                || !change.history.is_empty()
                || !change.history_chunks.is_empty()
                || !change.contact_syncs.is_empty()
            {
                unrouted.push(change.phone_number_id.clone().unwrap_or_default());
            }
            continue;
        };
        items.extend(change.messages.iter().map(|m| Item::Message {
            channel_id,
            message: m,
            sender: change.sender_of(m),
        }));
        items.extend(change.statuses.iter().map(|s| Item::Status { channel_id, status: s }));
        items.extend(change.echoes.iter().map(|echo| Item::Echo { channel_id, echo }));
        items.extend(change.user_id_updates.iter().map(|update| Item::UserIdUpdate { channel_id, update }));
        items.extend(change.calls.iter().map(|call| Item::Call { channel_id, call }));
        items.extend(change.groups.iter().map(|event| Item::Group { channel_id, event }));
        items.extend(change.history.iter().map(|message| Item::History { channel_id, message }));
        items.extend(change.contact_syncs.iter().map(|contact| Item::ContactSync { channel_id, contact }));
    }
    (items, unrouted)
}

/// Items gathered for the write path (`_wa_receive_messages`, `_wa_receive_statuses`): many
/// webhooks' worth, or one item. Storing a batch has the same result as storing its items one
/// by one.
#[derive(Default)]
pub struct Batch {
    /// Message rows, cut after each system message: an identity change it announces is applied
    /// at the end of its call, and the messages after it must see it, as they would one by one.
    segments: Vec<store::MessageRows>,
    cut: bool,
    statuses: store::StatusRows,
    echoes: store::EchoRows,
    user_id_updates: store::UserIdUpdateRows,
    calls: store::CallRows,
    groups: store::GroupEventRows,
    history: store::HistoryRows,
    contact_syncs: store::ContactSyncRows,
}

impl Batch {
    pub fn add(&mut self, event_id: i64, item: &Item) {
        match *item {
            Item::Message { channel_id, message, sender } => {
                if self.cut || self.segments.is_empty() {
                    self.segments.push(store::MessageRows::default());
                }
                self.segments.last_mut().expect("pushed above").push(channel_id, event_id, message, sender);
                self.cut = message.kind == "system";
            }
            Item::Status { channel_id, status } => self.statuses.push(channel_id, status),
            Item::Echo { channel_id, echo } => self.echoes.push(channel_id, echo),
            Item::UserIdUpdate { channel_id, update } => self.user_id_updates.push(channel_id, update),
            Item::Call { channel_id, call } => self.calls.push(channel_id, call),
            Item::Group { channel_id, event } => self.groups.push(channel_id, event),
            Item::History { channel_id, message } => self.history.push(channel_id, message),
            Item::ContactSync { channel_id, contact } => self.contact_syncs.push(channel_id, contact),
        }
    }

    /// Stores everything; returns how many messages (echoes and history included) and statuses
    /// were new. BSUID changes go first, so that the messages find their contact under the old
    /// id and the new one alike; group events before messages, so that a group created in the
    /// same POST is known with its subject; the business app's contacts before its history, so
    /// that history finds them; echoes and history before the statuses, so that a status in the
    /// same POST finds its message.
    pub fn store(self) -> (i64, i64) {
        store::apply_user_id_updates(self.user_id_updates);
        store::receive_group_events(self.groups);
        store::apply_contact_syncs(self.contact_syncs);
        let messages: i64 = self.segments.into_iter().map(store::receive_messages).sum();
        let echoes = store::receive_echoes(self.echoes);
        let history = store::receive_history(self.history);
        store::receive_calls(self.calls);
        (messages + echoes + history, store::receive_statuses(self.statuses))
    }
}

/// Stores every message and status of `payload`, received as event `event_id`; `route` maps a
/// change's `phone_number_id` to the channel it belongs to (see [`http::route`]).
/// All items at once; if that fails, each item again in a subtransaction of its own, through
/// the same write path, so that a bad item costs only itself.
pub fn store_payload(
    posting_channel: i64,
    event_id: i64,
    payload: &Payload,
    route: impl Fn(Option<&str>) -> Option<i64>,
) -> Stored {
    let mut out = Stored::default();
    for change in &payload.changes {
        if let Some(template) = &change.template_status {
            let applied = subtransaction::run_classified(|| {
                store::apply_template_status(posting_channel, change.business_account_id.as_deref(), template)
            });
            if let Err(e) = applied {
                out.failed(format!("template status of {}", template.name), e);
            }
        }
        out.problems.extend(change.rejected.iter().map(|r| r.reason.to_string()));
    }
    let (items, unrouted) = items(payload, &route);
    out.unrouted = unrouted;
    let mut batch = Batch::default();
    for item in &items {
        batch.add(event_id, item);
    }
    match subtransaction::run_classified(|| batch.store()) {
        Ok((messages, statuses)) => {
            out.new_messages = messages;
            out.new_statuses = statuses;
        }
        // Whatever the cause, each item alone: a deadlock or a user's trigger may hold up one
        // item and not the others, and what can be stored is stored now.
        Err(_) => {
            for item in &items {
                let mut one = Batch::default();
                one.add(event_id, item);
                match subtransaction::run_classified(|| one.store()) {
                    Ok((messages, statuses)) => {
                        out.new_messages += messages;
                        out.new_statuses += statuses;
                    }
                    Err(e) => out.failed(item.describe(), e),
                }
            }
        }
    }
    // How far a history sync is: after its messages, so a notified chunk is stored.
    for change in payload.changes.iter().filter(|c| !c.history_chunks.is_empty()) {
        let Some(channel_id) = route(change.phone_number_id.as_deref()) else { continue };
        for chunk in &change.history_chunks {
            if let Err(e) = subtransaction::run_classified(|| store::history_chunk(channel_id, chunk)) {
                out.failed(format!("history chunk {:?}", chunk.chunk_order), e);
            }
        }
    }
    if !out.unrouted.is_empty() {
        out.problems.push(format!(
            "updates for phone_number_id {} kept raw only: no channel of this app has that number",
            out.unrouted.join(", ")
        ));
    }
    out
}

/// Records the outcome of a stored event on it and in the channel's counters.
pub fn record_outcome(channel: &store::ChannelCredentials, event_id: i64, stored: &Stored, counts: &mut Counts) {
    counts.add_stored(stored.new_messages, stored.new_statuses);
    for pnid in &stored.unrouted {
        counts.add(channel.id, CounterKind::Unrouted, Some(pnid));
    }
    let outcome = stored.outcome();
    counts.add(channel.id, outcome.counter(), None);
    let Some(summary) = stored.summary() else { return };
    match outcome {
        store::EventOutcome::Incomplete => warning!(
            "whatsapp_channel: webhook event {event_id} for channel '{}' is incomplete, answered 500 so that Meta sends \
             it again, and kept until it is replayed: {summary}",
            channel.name
        ),
        _ => warning!(
            "whatsapp_channel: webhook event {event_id} for channel '{}' stored with problems: {summary}",
            channel.name
        ),
    }
    store::set_webhook_event_outcome(event_id, outcome, Some(&summary));
}

/// Totals of a replay.
#[derive(Default)]
pub struct Replayed {
    pub events: i64,
    pub new_messages: i64,
    pub new_statuses: i64,
    /// Events with items that still could not be stored.
    pub still_incomplete: i64,
}

/// Stores again what the stored webhook events `first_id..=last_id` hold (all when `None`),
/// of one channel or all, or only the `incomplete` ones:
/// only messages and statuses that are not there yet are added (and notified), and each
/// event's outcome is brought up to date (an incomplete event whose items are now all stored
/// becomes `stored`, and retention may delete it).
pub fn replay(
    first_id: Option<i64>,
    last_id: Option<i64>,
    only_channel: Option<&str>,
    incomplete_only: bool,
) -> Replayed {
    let channels = store::load_channels();
    let only = match only_channel {
        None => None,
        Some(name) => match channels.iter().find(|c| c.name == name) {
            Some(c) => Some(c.id),
            None => error!("whatsapp_channel: unknown channel '{name}'"),
        },
    };
    let mut totals = Replayed::default();
    let mut after = first_id.map_or(0, |f| f - 1);
    // In pages, so that a large log is never all in memory at once.
    loop {
        let page = store::webhook_events_after(after, last_id, incomplete_only, 100);
        let Some(last) = page.last() else { break };
        after = last.id;
        for event in &page {
            let Some(channel) = channels.iter().find(|c| Some(c.id) == event.channel_id) else { continue };
            if only.is_some_and(|id| id != channel.id) {
                continue;
            }
            let Ok(payload) = whatsapp_cloud::webhook::parse(&event.body) else { continue };
            let stored = store_payload(channel.id, event.id, &payload, |pnid| http::route(&channels, channel, pnid));
            totals.events += 1;
            totals.new_messages += stored.new_messages;
            totals.new_statuses += stored.new_statuses;
            let outcome = stored.outcome();
            let summary = stored.summary();
            if event.outcome != outcome.as_sql() || summary.is_some() {
                store::set_webhook_event_outcome(event.id, outcome, summary.as_deref());
            }
            if outcome == store::EventOutcome::Incomplete {
                totals.still_incomplete += 1;
                warning!(
                    "whatsapp_channel: webhook event {} for channel '{}' is still incomplete after a replay: {}",
                    event.id,
                    channel.name,
                    summary.unwrap_or_default()
                );
            }
        }
    }
    totals
}
