//! The inbound path's SQL: raw webhook events, and the row batches of the one write path (sql/
//! inbound*.sql's `_wa_receive_*` functions, one array per column, declared once each with
//! [`row_batch!`]). Most of the logic is in those SQL functions; this only gathers and calls.

use super::counts::CounterKind;
use crate::pg::spi::{column, get_one_prepared, ok};
use crate::row_batch;
use crate::{sql_enum, sql_row};
use pgrx::JsonB;
use pgrx::prelude::*;
use whatsapp_cloud::webhook;

sql_enum! {
    /// What became of a stored webhook event: its `outcome` column (see sql/schema.sql).
    pub enum EventOutcome ("webhook event outcome") {
        Stored = "stored", Partial = "partial", Incomplete = "incomplete", InvalidPayload = "invalid_payload",
    }
}

impl EventOutcome {
    /// What the listener counts for a POST with this outcome.
    pub fn counter(self) -> CounterKind {
        match self {
            EventOutcome::Stored => CounterKind::Stored,
            EventOutcome::Partial => CounterKind::Partial,
            EventOutcome::Incomplete => CounterKind::Incomplete,
            EventOutcome::InvalidPayload => CounterKind::InvalidPayload,
        }
    }
}

/// Keeps a signed POST that is not a webhook payload (`invalid_payload`, with why).
pub fn insert_unreadable_event(channel_id: i64, body: &[u8], headers: &serde_json::Value, error: &str) -> i64 {
    let id: Option<i64> = ok(Spi::get_one_with_args(
        "INSERT INTO wa_webhook_events (channel_id, body, headers, outcome, error, message_count, status_count)
         VALUES ($1, $2, $3, $4, $5, 0, 0) RETURNING id",
        &[
            channel_id.into(),
            body.into(),
            JsonB(headers.clone()).into(),
            EventOutcome::InvalidPayload.as_sql().into(),
            error.into(),
        ],
    ));
    id.expect("INSERT ... RETURNING returns a row")
}

/// A verified, readable POST to keep as an event (see [`insert_payload_events`]).
pub struct NewEvent<'a> {
    pub channel_id: i64,
    pub body: &'a [u8],
    pub headers: &'a serde_json::Value,
    pub payload: &'a webhook::Payload,
}

/// Keeps verified POSTs as events (outcome `stored` until told otherwise) in one statement,
/// a batch's or a single POST's; returns their ids in the order given. (Identities are drawn
/// in insertion order, and the rows are inserted in the order given, so the returned ids
/// sorted are the events in order.)
pub fn insert_payload_events(events: &[NewEvent]) -> Vec<i64> {
    let n = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let channels: Vec<i64> = events.iter().map(|e| e.channel_id).collect();
    let bodies: Vec<&[u8]> = events.iter().map(|e| e.body).collect();
    let headers: Vec<JsonB> = events.iter().map(|e| JsonB(e.headers.clone())).collect();
    let messages: Vec<i32> = events.iter().map(|e| n(e.payload.message_count())).collect();
    let statuses: Vec<i32> = events.iter().map(|e| n(e.payload.status_count())).collect();
    let ids: Option<Vec<i64>> = get_one_prepared(
        "WITH ins AS (
             INSERT INTO wa_webhook_events (channel_id, body, headers, outcome, message_count, status_count)
             SELECT u.ch, u.body, u.headers, 'stored', u.messages, u.statuses
               FROM unnest($1::bigint[], $2::bytea[], $3::jsonb[], $4::integer[], $5::integer[])
                    WITH ORDINALITY AS u(ch, body, headers, messages, statuses, ord)
              ORDER BY u.ord
             RETURNING id)
         SELECT pg_catalog.array_agg(id ORDER BY id) FROM ins",
        &[channels.into(), bodies.into(), headers.into(), messages.into(), statuses.into()],
    );
    let ids = ids.unwrap_or_default();
    assert_eq!(ids.len(), events.len(), "one event per POST");
    ids
}

pub fn set_webhook_event_outcome(event_id: i64, outcome: EventOutcome, error: Option<&str>) {
    ok(Spi::run_with_args(
        "UPDATE wa_webhook_events SET outcome = $2, error = $3 WHERE id = $1",
        &[event_id.into(), outcome.as_sql().into(), error.into()],
    ));
}

sql_row! {
    /// A stored webhook event, for replay.
    pub struct StoredEvent {
        pub id: i64,
        pub channel_id: Option<i64>,
        pub outcome: EventOutcome,
        pub body: Vec<u8>,
    }
}

/// Up to `limit` stored events with ids above `after` (and up to `last`, if given), in order;
/// only the `incomplete` ones if `incomplete_only`, read through their partial index (the
/// maintenance worker asks every minute, and the log holds a month of POSTs).
pub fn webhook_events_after(after: i64, last: Option<i64>, incomplete_only: bool, limit: i64) -> Vec<StoredEvent> {
    let sql = if incomplete_only {
        "SELECT id, channel_id, outcome, body FROM wa_webhook_events
          WHERE outcome = 'incomplete' AND id > $1 AND ($2::bigint IS NULL OR id <= $2)
          ORDER BY id LIMIT $3"
    } else {
        "SELECT id, channel_id, outcome, body FROM wa_webhook_events
          WHERE id > $1 AND ($2::bigint IS NULL OR id <= $2)
          ORDER BY id LIMIT $3"
    };
    Spi::connect(|client| {
        let rows = ok(client.select(sql, None, &[after.into(), last.into(), limit.into()]));
        rows.map(|row| StoredEvent::from_row(&row)).collect()
    })
}

/// Per channel with webhook events still to replay (outcome `incomplete`): how many.
/// Served by the partial index wa_webhook_events_incomplete.
pub fn incomplete_events() -> Vec<(i64, i64)> {
    Spi::connect(|client| {
        let rows = ok(client.select(
            "SELECT channel_id, count(*) AS events FROM wa_webhook_events
              WHERE outcome = 'incomplete' AND channel_id IS NOT NULL GROUP BY channel_id",
            None,
            &[],
        ));
        rows.map(|row| (column(&row, "channel_id"), column(&row, "events"))).collect()
    })
}

/// One channel's count of one kind to add to `wa_channel_counters`.
pub struct CountRow {
    pub channel_id: i64,
    pub kind: CounterKind,
    pub n: i64,
    pub detail: Option<String>,
    /// When the latest of them was seen.
    pub last_at: std::time::SystemTime,
}

/// Adds counts to `wa_channel_counters`, in one statement, in the order given. (A channel
/// deleted since is skipped; one deleted by a transaction that has not committed yet makes it
/// fail.)
pub fn add_counts(rows: &[CountRow]) {
    let epoch = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let channels: Vec<i64> = rows.iter().map(|r| r.channel_id).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_sql()).collect();
    let ns: Vec<i64> = rows.iter().map(|r| r.n).collect();
    let details: Vec<Option<&str>> = rows.iter().map(|r| r.detail.as_deref()).collect();
    let ats: Vec<f64> = rows.iter().map(|r| epoch(r.last_at)).collect();
    let _: Option<i64> = get_one_prepared(
        "WITH added AS (
             INSERT INTO wa_channel_counters AS k (channel_id, kind, count, last_at, last_detail)
             SELECT u.ch, u.kind, u.n, pg_catalog.to_timestamp(u.at), u.detail
               FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::double precision[])
                    WITH ORDINALITY AS u(ch, kind, n, detail, at, ord)
              WHERE EXISTS (SELECT FROM wa_channels c WHERE c.id = u.ch)
              ORDER BY u.ord
             ON CONFLICT (channel_id, kind) DO UPDATE
                SET count = k.count + excluded.count, last_at = greatest(k.last_at, excluded.last_at),
                    last_detail = COALESCE(excluded.last_detail, k.last_detail)
             RETURNING 1)
         SELECT pg_catalog.count(*) FROM added",
        &[channels.into(), kinds.into(), ns.into(), details.into(), ats.into()],
    );
}

/// Seconds since the epoch, as Meta's timestamps are sent (and as the SQL functions take them).
fn seconds(timestamp: Option<i64>) -> Option<f64> {
    timestamp.map(|t| t as f64)
}

row_batch! {
    /// Inbound messages of any kind for one call of `_wa_receive_messages`, the one write path
    /// for messages: a whole batch of webhooks, or a single item when a batch failed.
    MessageRows, MessageRow => "_wa_receive_messages" {
        channels: i64,
        events: i64,
        wamids: String,
        froms: Option<String>,
        from_user_ids: Option<String>,
        names: Option<String>,
        usernames: Option<String>,
        types: String,
        bodies: Option<String>,
        sent_ats: Option<f64>,
        payloads: JsonB,
        group_ids: Option<String>,
        /// A structured reply's answers (a Flow's, an address, a call permission), parsed.
        flow_responses: Option<JsonB>,
        flow_tokens: Option<String>,
    }
}

impl MessageRows {
    pub fn push(&mut self, channel_id: i64, event_id: i64, m: &webhook::Message, sender: Option<&webhook::Contact>) {
        self.push_row(MessageRow {
            channels: channel_id,
            events: event_id,
            wamids: m.wamid.clone(),
            froms: m.from.clone().or_else(|| sender.and_then(|s| s.wa_id.clone())),
            from_user_ids: m.from_user_id.clone().or_else(|| sender.and_then(|s| s.user_id.clone())),
            names: sender.and_then(|s| s.profile_name.clone()),
            usernames: sender.and_then(|s| s.username.clone()),
            types: m.kind.clone(),
            bodies: m.text.clone(),
            sent_ats: seconds(m.timestamp),
            payloads: JsonB(m.raw.clone()),
            group_ids: m.group_id.clone(),
            flow_responses: m.structured_reply.as_ref().and_then(|r| r.response.clone()).map(JsonB),
            flow_tokens: m.structured_reply.as_ref().and_then(|r| r.flow_token.clone()),
        });
    }
}

row_batch! {
    /// Status webhooks for one call of `_wa_receive_statuses`, which stores and applies them.
    StatusRows, StatusRow => "_wa_receive_statuses" {
        channels: i64,
        wamids: String,
        statuses: String,
        status_ats: Option<f64>,
        recipients: Option<String>,
        codes: Option<i32>,
        titles: Option<String>,
        details: Option<String>,
        payloads: JsonB,
        pricing_models: Option<String>,
        pricing_types: Option<String>,
        pricing_categories: Option<String>,
        billables: Option<bool>,
        participants: Option<String>,
        /// The outbox id the send carried in `biz_opaque_callback_data`, echoed back.
        outbox_ids: Option<i64>,
    }
}

impl StatusRows {
    pub fn push(&mut self, channel_id: i64, s: &webhook::Status) {
        let pricing = s.pricing.clone().unwrap_or_default();
        self.push_row(StatusRow {
            channels: channel_id,
            wamids: s.wamid.clone(),
            statuses: s.status.clone(),
            status_ats: seconds(s.timestamp),
            recipients: s.recipient_id.clone(),
            codes: s.error_code.and_then(|c| i32::try_from(c).ok()),
            titles: s.error_title.clone(),
            details: s.error_details.clone(),
            payloads: JsonB(s.raw.clone()),
            pricing_models: pricing.model,
            pricing_types: pricing.kind,
            pricing_categories: pricing.category,
            billables: pricing.billable,
            participants: s.participant_id.clone(),
            outbox_ids: s.outbox_id,
        });
    }
}

row_batch! {
    /// Messages the business sent from the WhatsApp Business app, for `_wa_receive_echoes`
    /// (stored as outbound rows).
    EchoRows, EchoRow => "_wa_receive_echoes" {
        channels: i64,
        wamids: String,
        recipients: Option<String>,
        types: String,
        bodies: Option<String>,
        sent_ats: Option<f64>,
        payloads: JsonB,
    }
}

impl EchoRows {
    pub fn push(&mut self, channel_id: i64, e: &webhook::Echo) {
        self.push_row(EchoRow {
            channels: channel_id,
            wamids: e.message.wamid.clone(),
            recipients: e.to.clone(),
            types: e.message.kind.clone(),
            bodies: e.message.text.clone(),
            sent_ats: seconds(e.message.timestamp),
            payloads: JsonB(e.message.raw.clone()),
        });
    }
}

row_batch! {
    /// BSUID changes for `_wa_apply_user_id_updates`: contacts move to their new BSUIDs and
    /// keep the old ones.
    UserIdUpdateRows, UserIdUpdateRow => "_wa_apply_user_id_updates" {
        channels: i64,
        wa_ids: Option<String>,
        previous: Option<String>,
        current: String,
        parents: Option<String>,
    }
}

impl UserIdUpdateRows {
    pub fn push(&mut self, channel_id: i64, u: &webhook::UserIdUpdate) {
        self.push_row(UserIdUpdateRow {
            channels: channel_id,
            wa_ids: u.wa_id.clone(),
            previous: u.previous.clone(),
            current: u.current.clone(),
            parents: u.parent_current.clone(),
        });
    }
}

row_batch! {
    /// Call events for `_wa_receive_calls`.
    CallRows, CallRow => "_wa_receive_calls" {
        channels: i64,
        call_ids: String,
        froms: Option<String>,
        tos: Option<String>,
        events: String,
        directions: Option<String>,
        statuses: Option<String>,
        ats: Option<f64>,
        starts: Option<f64>,
        ends: Option<f64>,
        durations: Option<i32>,
        payloads: JsonB,
    }
}

impl CallRows {
    pub fn push(&mut self, channel_id: i64, c: &webhook::Call) {
        self.push_row(CallRow {
            channels: channel_id,
            call_ids: c.call_id.clone(),
            froms: c.from.clone(),
            tos: c.to.clone(),
            events: c.event.clone(),
            directions: c.direction.clone(),
            statuses: c.status.clone(),
            ats: seconds(c.timestamp),
            starts: seconds(c.start_time),
            ends: seconds(c.end_time),
            durations: c.duration.and_then(|d| i32::try_from(d).ok()),
            payloads: JsonB(c.raw.clone()),
        });
    }
}

row_batch! {
    /// Group webhook events for `_wa_receive_group_events`, applied in order.
    GroupEventRows, GroupEventRow => "_wa_receive_group_events" {
        channels: i64,
        group_ids: String,
        kinds: String,
        ats: Option<f64>,
        subjects: Option<String>,
        descriptions: Option<String>,
        invite_links: Option<String>,
        approval_modes: Option<String>,
        added: JsonB,
        removed: JsonB,
        failed: bool,
        payloads: JsonB,
    }
}

impl GroupEventRows {
    pub fn push(&mut self, channel_id: i64, g: &webhook::GroupEvent) {
        self.push_row(GroupEventRow {
            channels: channel_id,
            group_ids: g.group_id.clone(),
            kinds: g.kind.clone(),
            ats: seconds(g.timestamp),
            subjects: g.subject.clone(),
            descriptions: g.description.clone(),
            invite_links: g.invite_link.clone(),
            approval_modes: g.join_approval_mode.clone(),
            added: JsonB(serde_json::json!(g.added)),
            removed: JsonB(serde_json::json!(g.removed)),
            failed: g.failed,
            payloads: JsonB(g.raw.clone()),
        });
    }
}

row_batch! {
    /// Messages of a shared chat history for `_wa_receive_history`.
    HistoryRows, HistoryRow => "_wa_receive_history" {
        channels: i64,
        wamids: String,
        customers: Option<String>,
        from_business: bool,
        types: String,
        bodies: Option<String>,
        sent_ats: Option<f64>,
        statuses: Option<String>,
        payloads: JsonB,
    }
}

impl HistoryRows {
    pub fn push(&mut self, channel_id: i64, h: &webhook::HistoryMessage) {
        self.push_row(HistoryRow {
            channels: channel_id,
            wamids: h.message.wamid.clone(),
            customers: h.customer.clone(),
            from_business: h.from_business,
            types: h.message.kind.clone(),
            bodies: h.message.text.clone(),
            sent_ats: seconds(h.message.timestamp),
            statuses: h.status.clone(),
            payloads: JsonB(h.message.raw.clone()),
        });
    }
}

row_batch! {
    /// Contacts of the WhatsApp Business app for `_wa_apply_contact_syncs`, applied in order.
    ContactSyncRows, ContactSyncRow => "_wa_apply_contact_syncs" {
        channels: i64,
        wa_ids: String,
        names: Option<String>,
        actions: String,
    }
}

impl ContactSyncRows {
    pub fn push(&mut self, channel_id: i64, c: &webhook::ContactSync) {
        self.push_row(ContactSyncRow {
            channels: channel_id,
            wa_ids: c.wa_id.clone(),
            names: c.full_name.clone(),
            actions: c.action.clone(),
        });
    }
}

row_batch! {
    /// Customers who stopped or resumed marketing messages, for
    /// `_wa_apply_marketing_preferences`, applied in order (each only if newer than the last).
    UserPreferenceRows, UserPreferenceRow => "_wa_apply_marketing_preferences" {
        channels: i64,
        wa_ids: Option<String>,
        user_ids: Option<String>,
        preferences: &'static str,
        ats: Option<f64>,
    }
}

impl UserPreferenceRows {
    pub fn push(&mut self, channel_id: i64, u: &webhook::UserPreference) {
        self.push_row(UserPreferenceRow {
            channels: channel_id,
            wa_ids: u.wa_id.clone(),
            user_ids: u.user_id.clone(),
            preferences: u.preference.as_meta(),
            ats: seconds(u.timestamp),
        });
    }
}

/// Counts and notifies one chunk of a history sync (see _wa_history_chunk).
pub fn history_chunk(channel_id: i64, c: &webhook::HistoryChunk) {
    let int = |v: Option<i64>| v.and_then(|v| i32::try_from(v).ok());
    ok(Spi::run_with_args(
        "SELECT _wa_history_chunk($1, $2, $3, $4, $5, $6, $7)",
        &[
            channel_id.into(),
            int(c.phase).into(),
            int(c.chunk_order).into(),
            int(c.progress).into(),
            i32::try_from(c.messages).unwrap_or(i32::MAX).into(),
            int(c.error_code).into(),
            c.error.as_deref().into(),
        ],
    ));
}

/// Records what Meta said about the business (`event` of `change`, in webhook event
/// `event_id`) for the channels it is for, and acts on it (`_wa_receive_channel_event`, the one
/// write path of `wa_channel_events`); returns for how many channels.
pub fn channel_event(
    posting_channel: i64,
    event_id: i64,
    change: &webhook::Change,
    event: &webhook::BusinessEvent,
) -> i32 {
    let channels: Option<i32> = get_one_prepared(
        "SELECT _wa_receive_channel_event($1, $2, $3, $4, $5::wa_channel_event_kind, $6, $7, $8, $9, $10, $11, $12)",
        &[
            posting_channel.into(),
            change.phone_number_id.as_deref().into(),
            change.business_account_id.as_deref().into(),
            event.display_phone_number.as_deref().into(),
            event.kind.as_sql().into(),
            event.field.as_str().into(),
            seconds(event.at).into(),
            event.summary.as_str().into(),
            JsonB(event.facts.to_json()).into(),
            event.template.as_ref().map(|t| JsonB(t.to_json())).into(),
            JsonB(event.raw.clone()).into(),
            event_id.into(),
        ],
    );
    channels.unwrap_or(0)
}

/// Per channel and webhook field not understood: how many events (for /metrics).
pub fn unknown_fields() -> Vec<(i64, String, u64)> {
    Spi::connect(|client| {
        let rows = ok(client.select(
            "SELECT channel_id, field, count(*) AS events FROM wa_channel_events
              WHERE kind = 'unknown_field' GROUP BY channel_id, field ORDER BY channel_id, field",
            None,
            &[],
        ));
        rows.map(|row| {
            let events: i64 = column(&row, "events");
            (column(&row, "channel_id"), column(&row, "field"), u64::try_from(events).unwrap_or(0))
        })
        .collect()
    })
}
