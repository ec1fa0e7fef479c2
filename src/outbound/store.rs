//! The outbound path's SQL, as the delivery worker calls it: claiming due messages, recording
//! what Meta answered, and a channel's outages (the procedures are in sql/outbound_delivery.sql).

use crate::channels::Secret;
use crate::pg::spi::{Column, column, get_one_prepared, ok, rows_prepared};
use crate::sql_row;
use pgrx::JsonB;
use pgrx::prelude::*;
use pgrx::spi::SpiHeapTupleData;
use std::time::{Duration, SystemTime};

/// What a row of the outbox asks the worker to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxAction {
    /// A message to a customer or a group (any `type`: text, template, image, ...): tagged with
    /// its outbox id, and held to Meta's pair rate.
    Message,
    /// A read receipt (`type` mark_read): no message, so neither.
    ReadReceipt,
}

impl OutboxAction {
    /// The action of a row of this `type`. (Message types are an open set that Meta extends;
    /// the one type that is not a message is named here and in `wa_mark_read`.)
    fn of_type(message_type: &str) -> OutboxAction {
        match message_type {
            "mark_read" => OutboxAction::ReadReceipt,
            _ => OutboxAction::Message,
        }
    }
}

impl Column for OutboxAction {
    fn read(row: &SpiHeapTupleData, name: &str) -> Self {
        OutboxAction::of_type(&column::<String>(row, name))
    }
}

/// Where a message is posted: the `graph_endpoint` column (see sql/schema.sql).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphEndpoint {
    /// `/<phone number id>/messages`, the default (NULL).
    Messages,
    /// `/<phone number id>/marketing_messages`: the Marketing Messages API.
    MarketingMessages,
}

impl GraphEndpoint {
    /// The endpoint a column holds; another value is an ERROR (the schema's CHECK allows none).
    fn from_sql(value: Option<&str>) -> GraphEndpoint {
        match value {
            None => GraphEndpoint::Messages,
            Some("marketing_messages") => GraphEndpoint::MarketingMessages,
            Some(other) => error!("whatsapp_channel: unknown graph_endpoint {other:?}"),
        }
    }
}

impl Column for GraphEndpoint {
    fn read(row: &SpiHeapTupleData, name: &str) -> Self {
        GraphEndpoint::from_sql(column::<Option<String>>(row, name).as_deref())
    }
}

sql_row! {
    /// A message claimed for sending: its status is `sending` until the result is recorded.
    /// (Its `Debug` leaves the customer's message and number out, as well as the token.)
    #[derive(Clone)]
    pub struct Claimed {
        pub id: i64,
        pub channel_id: i64,
        pub max_per_second: i32,
        pub attempts: i32,
        pub phone_number_id: String,
        pub graph_api_version: String,
        pub access_token: Secret,
        /// The Graph API body.
        pub request: String,
        pub recipient: String,
        /// What the row asks for, read from the message's type.
        pub kind: OutboxAction,
        pub endpoint: GraphEndpoint,
        /// Its channel's Graph API is unreachable: this send is the probe that tells whether it
        /// answers again (see wa_channels.unreachable_since).
        pub probe: bool,
        /// Past its `expires_at`: failed instead of sent (see _wa_expire).
        pub expired: bool,
    }
}

impl std::fmt::Debug for Claimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimed")
            .field("id", &self.id)
            .field("channel_id", &self.channel_id)
            .field("attempts", &self.attempts)
            .field("kind", &self.kind)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Claims up to `max_messages` due messages; `budgets` limits channels by id (see _wa_claim_due).
pub fn claim_due(
    max_messages: i32,
    default_version: &str,
    budgets: serde_json::Map<String, serde_json::Value>,
) -> Vec<Claimed> {
    rows_prepared(
        "SELECT * FROM _wa_claim_due($1, $2, $3)",
        &[max_messages.into(), default_version.into(), JsonB(serde_json::Value::Object(budgets)).into()],
        Claimed::from_row,
    )
}

/// Seconds until the next queued message is due, if any is queued (see _wa_next_due_in).
pub fn next_due_in() -> Option<f64> {
    get_one_prepared("SELECT _wa_next_due_in()", &[])
}

/// Claimed messages that a restart interrupted go back to the queue, due after `resend_after`
/// (see _wa_requeue_interrupted); returns how many.
pub fn requeue_interrupted(resend_after: Duration) -> i32 {
    ok(Spi::get_one_with_args("SELECT _wa_requeue_interrupted($1)", &[resend_after.as_secs_f64().into()])).unwrap_or(0)
}

/// A claimed message goes back to the queue for `delay_seconds`, unsent (see _wa_defer).
pub fn defer(id: i64, delay_seconds: f64) {
    ok(Spi::run_with_args("SELECT _wa_defer($1, $2)", &[id.into(), delay_seconds.into()]));
}

/// Fails claimed messages past their `expires_at` (see _wa_expire).
pub fn expire(ids: &[i64]) {
    ok(Spi::run_with_args("SELECT _wa_expire($1)", &[ids.to_vec().into()]));
}

/// Whether a customer of these messages, just recorded as sent, has another message queued
/// (see _wa_queued_behind).
pub fn queued_behind(ids: &[i64]) -> bool {
    get_one_prepared("SELECT _wa_queued_behind($1)", &[ids.to_vec().into()]).unwrap_or(true)
}

/// Records sends Meta accepted (id, wamid), all in one statement (see _wa_mark_sent_all).
pub fn mark_sent(sends: &[(i64, Option<&str>)]) {
    let ids: Vec<i64> = sends.iter().map(|s| s.0).collect();
    let wamids: Vec<Option<&str>> = sends.iter().map(|s| s.1).collect();
    rows_prepared("SELECT _wa_mark_sent_all($1, $2)", &[ids.into(), wamids.into()], |_| ());
}

pub fn mark_failed(id: i64, code: Option<i32>, title: &str, details: Option<&str>) {
    ok(Spi::run_with_args(
        "SELECT _wa_mark_failed($1, $2, $3, $4)",
        &[id.into(), code.into(), title.into(), details.into()],
    ));
}

pub fn mark_retry(id: i64, delay_seconds: f64, code: Option<i32>, title: &str, details: Option<&str>) {
    ok(Spi::run_with_args(
        "SELECT _wa_mark_retry($1, $2, $3, $4, $5)",
        &[id.into(), delay_seconds.into(), code.into(), title.into(), details.into()],
    ));
}

/// The channel of this message refused its token: pause its queue, requeue the message.
pub fn pause_channel(id: i64, reason: &str) {
    ok(Spi::run_with_args("SELECT _wa_pause_channel($1, $2)", &[id.into(), reason.into()]));
}

/// The Graph API answers this channel with transport errors and 5xx only, since `since`: its
/// queue waits for a probe every `probe_every` (see _wa_channel_unreachable).
pub fn channel_unreachable(channel_id: i64, since: SystemTime, probe_every: Duration) {
    let since = since.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    ok(Spi::run_with_args(
        "SELECT _wa_channel_unreachable($1, pg_catalog.to_timestamp($2), $3)",
        &[channel_id.into(), since.into(), probe_every.as_secs_f64().into()],
    ));
}

/// The Graph API answered this channel again: its queue resumes (see _wa_channel_reachable).
pub fn channel_reachable(channel_id: i64) {
    ok(Spi::run_with_args("SELECT _wa_channel_reachable($1)", &[channel_id.into()]));
}

/// Per channel with outbound messages waiting: how many are queued or being sent, and the age
/// of the oldest in milliseconds (for `/metrics`). Served by the partial index wa_messages_outbox.
pub fn queues() -> Vec<(i64, i64, i64)> {
    Spi::connect(|client| {
        let rows = ok(client.select(
            "SELECT channel_id, count(*) AS waiting,
                    (extract(epoch FROM pg_catalog.now() - min(created_at)) * 1000)::bigint AS oldest_ms
               FROM wa_messages WHERE status IN ('queued', 'sending') GROUP BY channel_id",
            None,
            &[],
        ));
        rows.map(|row| (column(&row, "channel_id"), column(&row, "waiting"), column(&row, "oldest_ms"))).collect()
    })
}
