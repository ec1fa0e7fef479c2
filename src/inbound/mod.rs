//! The inbound path. [`http`]'s threads read, verify and parse requests and never call
//! Postgres; [`listener`], the worker's main thread, stores what they hand over and answers
//! after COMMIT. This module says what storing a verified webhook means, for the listener (live
//! POSTs) and `wa_replay_webhook_events()` (stored POSTs, after an upgrade that parses more):
//! one write path, set-based for a batch and the same for a single item. Everything is keyed by
//! Meta's ids, so storing the same payload again adds nothing.

pub mod http;
pub mod listener;

use crate::metrics;
use crate::pg::subtransaction;
use crate::store;
use pgrx::prelude::*;
use std::collections::HashMap;
use whatsapp_cloud::webhook::{
    Call, Contact, ContactSync, Echo, GroupEvent, HistoryMessage, Message, Payload, Status, UserIdUpdate,
};

/// Counts for `wa_channel_counters`, gathered over a batch and written once per channel and
/// kind (a counter row updated once per request would be the batch's hottest row), and for
/// the metrics in shared memory, published once the batch has committed.
#[derive(Default)]
pub struct Counts {
    kinds: HashMap<(i64, &'static str), (i64, Option<String>)>,
    /// New messages and statuses stored (metrics only).
    stored: (i64, i64),
}

impl Counts {
    pub fn add(&mut self, channel_id: i64, kind: &'static str, detail: Option<&str>) {
        self.add_n(channel_id, kind, detail, 1);
    }

    pub fn add_n(&mut self, channel_id: i64, kind: &'static str, detail: Option<&str>, n: i64) {
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
            let _ = subtransaction::run(|| store::count(*channel_id, kind, detail.as_deref(), *n));
        }
    }

    /// Adds the counts to the metrics; call it once what they count has committed.
    pub fn publish(&self) {
        use metrics::ChannelCounter as C;
        for ((channel_id, kind), (n, _)) in &self.kinds {
            let counter = match *kind {
                "stored" => C::PostStored,
                "partial" => C::PostPartial,
                "invalid_payload" => C::PostInvalidPayload,
                "signature_mismatch" => C::PostSignatureMismatch,
                "verified" => C::HandshakeVerified,
                "verify_token_mismatch" => C::HandshakeTokenMismatch,
                "unrouted" => C::UnroutedChanges,
                _ => continue,
            };
            metrics::add(*channel_id, counter, u64::try_from(*n).unwrap_or(0));
        }
        metrics::add_global_n(metrics::GlobalCounter::MessagesStored, u64::try_from(self.stored.0).unwrap_or(0));
        metrics::add_global_n(metrics::GlobalCounter::StatusesStored, u64::try_from(self.stored.1).unwrap_or(0));
    }
}

/// What storing one payload found, beyond the rows themselves.
#[derive(Default)]
pub struct Stored {
    /// Items refused (each rolled back alone), with the reason.
    pub problems: Vec<String>,
    /// `phone_number_id`s of changes no channel of this app has: kept raw in the event only.
    pub unrouted: Vec<String>,
    pub new_messages: i64,
    pub new_statuses: i64,
    /// An item failed for a reason that may pass (a deadlock, a timeout): the whole POST
    /// should be redelivered rather than acknowledged.
    pub transient: Option<String>,
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
            let applied = subtransaction::run(|| {
                store::apply_template_status(posting_channel, change.business_account_id.as_deref(), template)
            });
            if let Err(e) = applied {
                out.problems.push(format!("template status of {}: {e}", template.name));
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
        Err(e) if e.transient => out.transient = Some(e.message),
        Err(_) => {
            for item in &items {
                let mut one = Batch::default();
                one.add(event_id, item);
                match subtransaction::run_classified(|| one.store()) {
                    Ok((messages, statuses)) => {
                        out.new_messages += messages;
                        out.new_statuses += statuses;
                    }
                    Err(e) if e.transient => out.transient = Some(format!("{}: {}", item.describe(), e.message)),
                    Err(e) => out.problems.push(format!("{}: {}", item.describe(), e.message)),
                }
            }
        }
    }
    // How far a history sync is: after its messages, so a notified chunk is stored.
    for change in payload.changes.iter().filter(|c| !c.history_chunks.is_empty()) {
        let Some(channel_id) = route(change.phone_number_id.as_deref()) else { continue };
        for chunk in &change.history_chunks {
            if let Err(e) = subtransaction::run(|| store::history_chunk(channel_id, chunk)) {
                out.problems.push(format!("history chunk {:?}: {e}", chunk.chunk_order));
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
        counts.add(channel.id, "unrouted", Some(pnid));
    }
    if stored.problems.is_empty() {
        return;
    }
    let summary = stored.problems.join("; ");
    warning!(
        "whatsapp_channel: webhook event {event_id} for channel '{}' stored with problems: {summary}",
        channel.name
    );
    store::set_webhook_event_outcome(event_id, store::EventOutcome::Partial(&summary));
}

/// Totals of a replay.
#[derive(Default)]
pub struct Replayed {
    pub events: i64,
    pub new_messages: i64,
    pub new_statuses: i64,
}

/// Stores again what the stored webhook events `first_id..=last_id` hold (all when `None`),
/// of one channel or all:
/// only messages and statuses that are not there yet are added (and notified).
pub fn replay(first_id: Option<i64>, last_id: Option<i64>, only_channel: Option<&str>) -> Replayed {
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
        let page = store::webhook_events_after(after, last_id, 100);
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
            if stored.problems.is_empty() {
                if event.outcome != "stored" {
                    store::set_webhook_event_outcome(event.id, store::EventOutcome::Stored);
                }
            } else {
                let mut counts = Counts::default();
                record_outcome(channel, event.id, &stored, &mut counts);
                counts.flush();
            }
        }
    }
    totals
}
