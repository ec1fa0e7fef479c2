//! What storing a verified webhook means, for the listener (live POSTs) and replay (stored
//! POSTs): its items routed to their channels, gathered into one [`Batch`] per call of the
//! SQL write path (set-based for many POSTs, the same for a single item), and what could not
//! be stored filed under its cause. Everything is keyed by Meta's ids, so storing the same
//! payload again adds nothing.

use super::counts::{CounterKind, Counts};
use super::store::{self, EventOutcome};
use crate::channels::ChannelCredentials;
use crate::pg::spi::store_rows;
use crate::pg::subtransaction::{self, Cause};
use crate::warning;
use whatsapp_cloud::webhook::{
    BusinessKind, Call, Contact, ContactSync, Echo, GroupEvent, HistoryMessage, Message, Payload, Status, UserIdUpdate,
    UserPreference,
};

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
    /// Webhook fields not understood, and for how many channels each was recorded.
    pub unknown_fields: Vec<(String, i32)>,
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
    pub fn outcome(&self) -> EventOutcome {
        if !self.unstored.is_empty() {
            EventOutcome::Incomplete
        } else if !self.problems.is_empty() {
            EventOutcome::Partial
        } else {
            EventOutcome::Stored
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
    /// A customer stopped or resumed marketing messages.
    UserPreference {
        channel_id: i64,
        preference: &'a UserPreference,
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
            Item::UserPreference { preference, .. } => format!(
                "marketing preference {} of {}",
                preference.preference.as_meta(),
                preference.wa_id.as_deref().or(preference.user_id.as_deref()).unwrap_or("?")
            ),
        }
    }
}

/// The messages and statuses of `payload` routed to their channels (see
/// [`super::route::route`]), in order; and the `phone_number_id`s no channel of this app
/// has. What Meta says about the business is not an item (see [`store_payload`]).
pub fn items<'a>(payload: &'a Payload, route: impl Fn(Option<&str>) -> Option<i64>) -> (Vec<Item<'a>>, Vec<String>) {
    let mut items = Vec::new();
    let mut unrouted = Vec::new();
    for change in &payload.changes {
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
                || !change.user_preferences.is_empty()
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
        items.extend(change.user_preferences.iter().map(|preference| Item::UserPreference { channel_id, preference }));
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
    user_preferences: store::UserPreferenceRows,
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
            Item::UserPreference { channel_id, preference } => self.user_preferences.push(channel_id, preference),
        }
    }

    /// Stores everything; returns how many messages (echoes and history included) and statuses
    /// were new. BSUID changes go first, so that the messages find their contact under the old
    /// id and the new one alike; group events before messages, so that a group created in the
    /// same POST is known with its subject; the business app's contacts before its history, so
    /// that history finds them; echoes and history before the statuses, so that a status in the
    /// same POST finds its message; marketing preferences last, so that a customer's message
    /// and preference in one POST make one contact (which preference wins depends only on the
    /// events' own times).
    pub fn store(self) -> (i64, i64) {
        store_rows(self.user_id_updates);
        store_rows(self.groups);
        store_rows(self.contact_syncs);
        let messages: i64 = self.segments.into_iter().map(store_rows).sum();
        let echoes = store_rows(self.echoes);
        let history = store_rows(self.history);
        store_rows(self.calls);
        let statuses = store_rows(self.statuses);
        store_rows(self.user_preferences);
        (messages + echoes + history, statuses)
    }
}

/// Stores every message and status of `payload`, received as event `event_id`; `route` maps a
/// change's `phone_number_id` to the channel it belongs to (see [`super::route::route`]).
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
        for event in &change.business {
            let recorded =
                subtransaction::run_classified(|| store::channel_event(posting_channel, event_id, change, event));
            match recorded {
                Ok(0) => out.problems.push(format!(
                    "{} ({}) kept raw only: no channel of this app has business account {} (set wa_channels.waba_id)",
                    event.field,
                    event.summary,
                    change.business_account_id.as_deref().unwrap_or("?")
                )),
                Ok(channels) => out
                    .unknown_fields
                    .extend((event.kind == BusinessKind::UnknownField).then(|| (event.field.clone(), channels))),
                Err(e) => out.failed(format!("{} event", event.field), e),
            }
        }
        out.problems.extend(change.rejected.iter().map(|r| r.reason.to_string()));
    }
    // A field not understood keeps its raw event, marked partial, until a replay (by a
    // version that understands it) or its retention.
    for (field, _) in &out.unknown_fields {
        out.problems.push(format!("webhook field {field:?} is not understood by this version: kept raw"));
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
pub fn record_outcome(channel: &ChannelCredentials, event_id: i64, stored: &Stored, counts: &mut Counts) {
    counts.add_stored(stored.new_messages, stored.new_statuses);
    for pnid in &stored.unrouted {
        counts.add(channel.id, CounterKind::Unrouted, Some(pnid));
    }
    let outcome = stored.outcome();
    counts.add(channel.id, outcome.counter(), None);
    let Some(summary) = stored.summary() else { return };
    match outcome {
        EventOutcome::Incomplete => warning!(
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
