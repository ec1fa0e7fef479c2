//! Every SQL statement the extension runs from Rust, in one place. All values are bound
//! parameters; no statement is ever built from input. Most logic is in the SQL procedures
//! of `sql/` (inbound.sql, outbound.sql, media.sql): this module only calls them and reads their answers.

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::{self, OwnedPreparedStatement, SpiClient};
use pgrx::{JsonB, PgOid, PgSqlErrorCode};
use std::cell::RefCell;
use std::collections::HashMap;
use whatsapp_cloud::webhook;

/// A failed SPI call that is not a Postgres ERROR (those unwind by themselves) is a bug here:
/// raise it as an ERROR so the enclosing subtransaction rolls back.
fn ok<T>(result: spi::Result<T>) -> T {
    result.unwrap_or_else(|e| error!("whatsapp_channel: SPI: {e}"))
}

thread_local! {
    /// The statements the workers run for every batch or turn, planned once per process (a
    /// worker's main thread is the only one that runs SQL). Planned anew for every call they
    /// cost a tenth of the listener's time (perf); Postgres re-plans a kept statement by itself
    /// when what it names changes (a re-created extension).
    static PREPARED: RefCell<HashMap<&'static str, OwnedPreparedStatement>> = RefCell::new(HashMap::new());
}

/// Runs `sql` (a statement that writes) as a statement prepared once, with `args` (whose
/// types are those of the first call); returns the first column of the first row.
fn get_one_prepared<T: FromDatum + IntoDatum>(sql: &'static str, args: &[DatumWithOid]) -> Option<T> {
    ok(Spi::connect_mut(|client| {
        let known = PREPARED.with_borrow(|p| p.contains_key(sql));
        if !known {
            let types: Vec<PgOid> = args.iter().map(|a| PgOid::from(a.oid())).collect();
            let statement = client.prepare_mut(sql, &types)?.keep();
            PREPARED.with_borrow_mut(|p| p.insert(sql, statement));
        }
        PREPARED.with_borrow(|p| client.update(&p[sql], Some(1), args)?.first().get_one::<T>())
    }))
}

// ---------------------------------------------------------------------------------------------
// Channels

pub fn insert_channel(
    name: &str,
    phone_number_id: &str,
    access_token: &str,
    app_secret: &str,
    verify_token: &str,
    waba_id: Option<&str>,
) -> i64 {
    let taken: Option<String> = ok(Spi::get_one_with_args(
        "SELECT (SELECT CASE WHEN name = $1 THEN 'name' ELSE 'phone_number_id' END
                     FROM wa_channels WHERE name = $1 OR phone_number_id = $2 LIMIT 1)",
        &[name.into(), phone_number_id.into()],
    ));
    if let Some(field) = taken {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
            format!("a channel with this {field} already exists"),
            "whatsapp_channel",
        )
        .set_hint(
            "Each channel needs its own name and Phone Number ID; see SELECT name, phone_number_id FROM wa_channels.",
        )
        .report(PgLogLevel::ERROR);
    }
    let id: Option<i64> = ok(Spi::get_one_with_args(
        "WITH c AS (INSERT INTO wa_channels (name, phone_number_id, waba_id) VALUES ($1, $2, $6) RETURNING id)
         INSERT INTO wa_channel_secrets (channel_id, access_token, app_secret, verify_token)
         SELECT id, $3, $4, $5 FROM c RETURNING channel_id",
        &[
            name.into(),
            phone_number_id.into(),
            access_token.into(),
            app_secret.into(),
            verify_token.into(),
            waba_id.into(),
        ],
    ));
    id.expect("INSERT ... RETURNING returns a row")
}

/// What calling the Graph API for a channel from a session needs (templates, uploads).
pub struct ChannelApi {
    pub id: i64,
    pub phone_number_id: String,
    pub waba_id: Option<String>,
    pub graph_api_version: Option<String>,
    pub access_token: String,
}

pub fn channel_api(channel: &str) -> Option<ChannelApi> {
    Spi::connect(|client| {
        let row = ok(client.select(
            "SELECT c.id, c.phone_number_id, c.waba_id, c.graph_api_version, s.access_token
               FROM wa_channels c JOIN wa_channel_secrets s ON s.channel_id = c.id WHERE c.name = $1",
            None,
            &[channel.into()],
        ))
        .next()?;
        Some(ChannelApi {
            id: ok(row.get(1)).unwrap_or_default(),
            phone_number_id: ok(row.get(2)).unwrap_or_default(),
            waba_id: ok(row.get(3)),
            graph_api_version: ok(row.get(4)),
            access_token: ok(row.get(5)).unwrap_or_default(),
        })
    })
}

/// Makes `wa_templates` of a channel exactly `templates`; returns how many.
pub fn replace_templates(channel_id: i64, templates: &[whatsapp_cloud::graph_api::Template]) -> i32 {
    ok(Spi::run_with_args("DELETE FROM wa_templates WHERE channel_id = $1", &[channel_id.into()]));
    for t in templates {
        ok(Spi::run_with_args(
            "INSERT INTO wa_templates (channel_id, name, language, status, category, components, template_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (channel_id, name, language) DO UPDATE
                SET status = excluded.status, category = excluded.category, components = excluded.components,
                    template_id = excluded.template_id, updated_at = pg_catalog.now()",
            &[
                channel_id.into(),
                t.name.as_str().into(),
                t.language.as_str().into(),
                t.status.as_str().into(),
                t.category.as_deref().into(),
                JsonB(t.components.clone()).into(),
                t.id.as_deref().into(),
            ],
        ));
    }
    i32::try_from(templates.len()).unwrap_or(i32::MAX)
}

/// A template status webhook, for the channels of `business_account` of the posting channel's app.
pub fn apply_template_status(posting_channel: i64, business_account: Option<&str>, t: &webhook::TemplateStatus) {
    ok(Spi::run_with_args(
        "SELECT _wa_apply_template_status($1, $2, $3, $4, $5, $6, $7)",
        &[
            posting_channel.into(),
            business_account.into(),
            t.name.as_str().into(),
            t.language.as_str().into(),
            t.status.as_str().into(),
            t.template_id.as_deref().into(),
            t.reason.as_deref().into(),
        ],
    ));
}

/// What the webhook listener needs to know about a channel, as its HTTP threads share it. (Its
/// `Debug` leaves the secrets out.)
#[derive(Clone)]
pub struct ChannelCredentials {
    pub id: i64,
    pub name: String,
    pub phone_number_id: String,
    pub app_secret: String,
    pub verify_token: String,
}

/// Shown in place of a secret by every `Debug` of a type that holds one.
pub const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for ChannelCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelCredentials")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("phone_number_id", &self.phone_number_id)
            .field("app_secret", &REDACTED)
            .field("verify_token", &REDACTED)
            .finish()
    }
}

impl std::fmt::Debug for Claimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimed")
            .field("id", &self.id)
            .field("channel_id", &self.channel_id)
            .field("attempts", &self.attempts)
            .field("phone_number_id", &self.phone_number_id)
            .field("kind", &self.kind)
            .field("access_token", &REDACTED)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for MediaJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaJob")
            .field("message_id", &self.message_id)
            .field("media_id", &self.media_id)
            .field("attempts", &self.attempts)
            .field("access_token", &REDACTED)
            .finish_non_exhaustive()
    }
}

/// Every channel's id and name (for metrics' labels).
pub fn channel_names() -> Vec<(i64, String)> {
    Spi::connect(|client: &SpiClient| {
        let rows = ok(client.select("SELECT id, name FROM wa_channels", None, &[]));
        rows.map(|row| (ok(row.get(1)).unwrap_or_default(), ok(row.get(2)).unwrap_or_default())).collect()
    })
}

/// Per channel with outbound messages waiting: how many are queued or being sent, and the age
/// of the oldest in milliseconds. Served by the partial index wa_messages_outbox.
pub fn queues() -> Vec<(i64, i64, i64)> {
    Spi::connect(|client: &SpiClient| {
        let rows = ok(client.select(
            "SELECT channel_id, count(*),
                    (extract(epoch FROM pg_catalog.now() - min(created_at)) * 1000)::bigint
               FROM wa_messages WHERE status IN ('queued', 'sending') GROUP BY channel_id",
            None,
            &[],
        ));
        rows.map(|row| {
            (ok(row.get(1)).unwrap_or_default(), ok(row.get(2)).unwrap_or_default(), ok(row.get(3)).unwrap_or_default())
        })
        .collect()
    })
}

/// Per channel with webhook events still to replay (outcome `incomplete`): how many.
/// Served by the partial index wa_webhook_events_incomplete.
pub fn incomplete_events() -> Vec<(i64, i64)> {
    Spi::connect(|client: &SpiClient| {
        let rows = ok(client.select(
            "SELECT channel_id, count(*) FROM wa_webhook_events
              WHERE outcome = 'incomplete' AND channel_id IS NOT NULL GROUP BY channel_id",
            None,
            &[],
        ));
        rows.map(|row| (ok(row.get(1)).unwrap_or_default(), ok(row.get(2)).unwrap_or_default())).collect()
    })
}

pub fn load_channels() -> Vec<ChannelCredentials> {
    Spi::connect(|client: &SpiClient| {
        let rows = ok(client.select(
            "SELECT c.id, c.name, c.phone_number_id, s.app_secret, s.verify_token
               FROM wa_channels c JOIN wa_channel_secrets s ON s.channel_id = c.id",
            None,
            &[],
        ));
        rows.map(|row| ChannelCredentials {
            id: ok(row.get(1)).unwrap_or_default(),
            name: ok(row.get(2)).unwrap_or_default(),
            phone_number_id: ok(row.get(3)).unwrap_or_default(),
            app_secret: ok(row.get(4)).unwrap_or_default(),
            verify_token: ok(row.get(5)).unwrap_or_default(),
        })
        .collect()
    })
}

/// Whether the extension is installed in this database at this library's version. If so,
/// puts its schema on this session's search_path after pg_catalog (so nothing created in it
/// can shadow a built-in operator or function), so the statements here need not name it.
///
/// Installed at another version (a new library installed and the server restarted, but no
/// `ALTER EXTENSION whatsapp_channel UPDATE` yet) counts as not installed: the workers would
/// call functions and columns the old schema does not have. So they idle (the listener
/// answers 503, which Meta retries) and say once what to run.
pub fn use_extension_schema() -> bool {
    // (Run by every worker transaction: prepared once, like the listener's batch statements.)
    let installed: Option<String> = get_one_prepared(
        "SELECT (SELECT pg_catalog.set_config('search_path', pg_catalog.format('pg_catalog, %I', n.nspname), false)
                        || ' ' || e.extversion
                   FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                  WHERE e.extname = $1)",
        &["whatsapp_channel".into()],
    );
    let Some(version) = installed.as_deref().and_then(|s| s.rsplit(' ').next()) else { return false };
    let current = version == LIBRARY_VERSION;
    if !current && !WARNED_OTHER_VERSION.replace(true) {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "whatsapp_channel {version} is installed in this database, but the library is {LIBRARY_VERSION}: the workers wait until the schema matches"
            ),
            "use_extension_schema",
        )
        .set_hint("Run ALTER EXTENSION whatsapp_channel UPDATE in whatsapp_channel.database.")
        .report(PgLogLevel::WARNING);
    }
    if current {
        WARNED_OTHER_VERSION.set(false);
    }
    current
}

/// The schema version this library expects (`default_version` in the control file).
pub const LIBRARY_VERSION: &str = env!("CARGO_PKG_VERSION");

thread_local! {
    /// Whether this process has said that the installed schema is of another version.
    static WARNED_OTHER_VERSION: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

// ---------------------------------------------------------------------------------------------
// Webhooks

/// What became of a stored webhook event: its `outcome` column (see sql/schema.sql).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    Stored,
    Partial,
    Incomplete,
    InvalidPayload,
}

impl EventOutcome {
    pub fn as_sql(self) -> &'static str {
        match self {
            EventOutcome::Stored => "stored",
            EventOutcome::Partial => "partial",
            EventOutcome::Incomplete => "incomplete",
            EventOutcome::InvalidPayload => "invalid_payload",
        }
    }

    /// What the listener counts for a POST with this outcome.
    pub fn counter(self) -> crate::inbound::CounterKind {
        use crate::inbound::CounterKind;
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
/// a batch's or a single POST's; returns their ids in the order given. (Identities are drawn in insertion order, and the rows are inserted in
/// the order given, so the returned ids sorted are the events in order.)
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

/// Deletes up to `limit` webhook events older than `retention_s`; `None` if the extension is
/// not installed in this database. Oldest first, through `wa_webhook_events_received`.
pub fn purge_webhook_events(retention_s: i32, limit: i64) -> Option<i64> {
    if !use_extension_schema() {
        return None;
    }
    ok(Spi::get_one_with_args(
        "WITH gone AS (
             DELETE FROM wa_webhook_events WHERE id IN (
                 SELECT id FROM wa_webhook_events
                  WHERE received_at < pg_catalog.now() - pg_catalog.make_interval(secs => $1)
                    -- (kept until a replay has stored what it holds)
                    AND outcome <> 'incomplete'
                  ORDER BY received_at LIMIT $2)
             RETURNING 1)
         SELECT pg_catalog.count(*) FROM gone",
        &[retention_s.into(), limit.into()],
    ))
}

/// Drops the bytes of up to `limit` media files downloaded more than `retention_s` ago (the
/// job and its metadata stay, with `purged_at`); `None` if the extension is not installed.
pub fn purge_media_contents(retention_s: i32, limit: i64) -> Option<i64> {
    if !use_extension_schema() {
        return None;
    }
    ok(Spi::get_one_with_args(
        "WITH gone AS (
             UPDATE wa_media SET content = NULL, purged_at = pg_catalog.now() WHERE message_id IN (
                 SELECT message_id FROM wa_media
                  WHERE content IS NOT NULL AND updated_at < pg_catalog.now() - pg_catalog.make_interval(secs => $1)
                  ORDER BY updated_at LIMIT $2)
             RETURNING 1)
         SELECT pg_catalog.count(*) FROM gone",
        &[retention_s.into(), limit.into()],
    ))
}

/// A stored webhook event, for replay.
pub struct StoredEvent {
    pub id: i64,
    pub channel_id: Option<i64>,
    pub outcome: String,
    pub body: Vec<u8>,
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
        rows.map(|row| StoredEvent {
            id: ok(row.get(1)).unwrap_or_default(),
            channel_id: ok(row.get(2)),
            outcome: ok(row.get(3)).unwrap_or_default(),
            body: ok(row.get(4)).unwrap_or_default(),
        })
        .collect()
    })
}

/// One more of `kind` for a channel in `wa_channel_counters`.
pub fn count(channel_id: i64, kind: &str, detail: Option<&str>, n: i64) {
    let _: Option<i64> = get_one_prepared(
        "SELECT pg_catalog.count(*) FROM _wa_count($1, $2, $3, $4)",
        &[channel_id.into(), kind.into(), detail.into(), n.into()],
    );
}

/// Inbound messages of any kind gathered for one call of `_wa_receive_messages`, the one write
/// path for messages: a whole batch of webhooks, or a single item when a batch failed.
#[derive(Default)]
pub struct MessageRows {
    channels: Vec<i64>,
    events: Vec<i64>,
    wamids: Vec<String>,
    froms: Vec<Option<String>>,
    from_user_ids: Vec<Option<String>>,
    names: Vec<Option<String>>,
    usernames: Vec<Option<String>>,
    types: Vec<String>,
    bodies: Vec<Option<String>>,
    sent_ats: Vec<Option<f64>>,
    payloads: Vec<JsonB>,
    group_ids: Vec<Option<String>>,
}

impl MessageRows {
    pub fn push(&mut self, channel_id: i64, event_id: i64, m: &webhook::Message, sender: Option<&webhook::Contact>) {
        self.channels.push(channel_id);
        self.events.push(event_id);
        self.wamids.push(m.wamid.clone());
        self.froms.push(m.from.clone().or_else(|| sender.and_then(|s| s.wa_id.clone())));
        self.from_user_ids.push(m.from_user_id.clone().or_else(|| sender.and_then(|s| s.user_id.clone())));
        self.names.push(sender.and_then(|s| s.profile_name.clone()));
        self.usernames.push(sender.and_then(|s| s.username.clone()));
        self.types.push(m.kind.clone());
        self.bodies.push(m.text.clone());
        self.sent_ats.push(m.timestamp.map(|t| t as f64));
        self.payloads.push(JsonB(m.raw.clone()));
        self.group_ids.push(m.group_id.clone());
    }

    pub fn is_empty(&self) -> bool {
        self.wamids.is_empty()
    }
}

/// Stores all `rows` at once; returns how many were new.
pub fn receive_messages(rows: MessageRows) -> i64 {
    if rows.is_empty() {
        return 0;
    }
    let added: Option<i32> = get_one_prepared(
        "SELECT _wa_receive_messages($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            rows.channels.into(),
            rows.events.into(),
            rows.wamids.into(),
            rows.froms.into(),
            rows.from_user_ids.into(),
            rows.names.into(),
            rows.usernames.into(),
            rows.types.into(),
            rows.bodies.into(),
            rows.sent_ats.into(),
            rows.payloads.into(),
            rows.group_ids.into(),
        ],
    );
    i64::from(added.unwrap_or(0))
}

/// Status webhooks gathered for one call of `_wa_receive_statuses` (a batch, or one item).
#[derive(Default)]
pub struct StatusRows {
    channels: Vec<i64>,
    wamids: Vec<String>,
    statuses: Vec<String>,
    status_ats: Vec<Option<f64>>,
    recipients: Vec<Option<String>>,
    codes: Vec<Option<i32>>,
    titles: Vec<Option<String>>,
    details: Vec<Option<String>>,
    pricing_models: Vec<Option<String>>,
    pricing_types: Vec<Option<String>>,
    pricing_categories: Vec<Option<String>>,
    billables: Vec<Option<bool>>,
    payloads: Vec<JsonB>,
    participants: Vec<Option<String>>,
    outbox_ids: Vec<Option<i64>>,
}

impl StatusRows {
    pub fn push(&mut self, channel_id: i64, s: &webhook::Status) {
        self.channels.push(channel_id);
        self.wamids.push(s.wamid.clone());
        self.statuses.push(s.status.clone());
        self.status_ats.push(s.timestamp.map(|t| t as f64));
        self.recipients.push(s.recipient_id.clone());
        self.codes.push(s.error_code.and_then(|c| i32::try_from(c).ok()));
        self.titles.push(s.error_title.clone());
        self.details.push(s.error_details.clone());
        let pricing = s.pricing.clone().unwrap_or_default();
        self.pricing_models.push(pricing.model);
        self.pricing_types.push(pricing.kind);
        self.pricing_categories.push(pricing.category);
        self.billables.push(pricing.billable);
        self.payloads.push(JsonB(s.raw.clone()));
        self.participants.push(s.participant_id.clone());
        self.outbox_ids.push(s.outbox_id);
    }

    pub fn is_empty(&self) -> bool {
        self.wamids.is_empty()
    }
}

/// Message echoes gathered for `_wa_receive_echoes`, one array per column.
#[derive(Default)]
pub struct EchoRows {
    channels: Vec<i64>,
    wamids: Vec<String>,
    recipients: Vec<Option<String>>,
    types: Vec<String>,
    bodies: Vec<Option<String>>,
    sent_ats: Vec<Option<f64>>,
    payloads: Vec<JsonB>,
}

impl EchoRows {
    pub fn push(&mut self, channel_id: i64, e: &webhook::Echo) {
        self.channels.push(channel_id);
        self.wamids.push(e.message.wamid.clone());
        self.recipients.push(e.to.clone());
        self.types.push(e.message.kind.clone());
        self.bodies.push(e.message.text.clone());
        self.sent_ats.push(e.message.timestamp.map(|t| t as f64));
        self.payloads.push(JsonB(e.message.raw.clone()));
    }
}

/// BSUID changes gathered for `_wa_apply_user_id_updates`, one array per column.
#[derive(Default)]
pub struct UserIdUpdateRows {
    channels: Vec<i64>,
    wa_ids: Vec<Option<String>>,
    previous: Vec<Option<String>>,
    current: Vec<String>,
    parents: Vec<Option<String>>,
}

impl UserIdUpdateRows {
    pub fn push(&mut self, channel_id: i64, u: &webhook::UserIdUpdate) {
        self.channels.push(channel_id);
        self.wa_ids.push(u.wa_id.clone());
        self.previous.push(u.previous.clone());
        self.current.push(u.current.clone());
        self.parents.push(u.parent_current.clone());
    }
}

/// Moves contacts to their new BSUIDs, keeping the old ones (see _wa_apply_user_id_updates).
pub fn apply_user_id_updates(rows: UserIdUpdateRows) {
    if rows.current.is_empty() {
        return;
    }
    let _: Option<i32> = get_one_prepared(
        "SELECT _wa_apply_user_id_updates($1, $2, $3, $4, $5)",
        &[rows.channels.into(), rows.wa_ids.into(), rows.previous.into(), rows.current.into(), rows.parents.into()],
    );
}

/// Call events gathered for `_wa_receive_calls`, one array per column.
#[derive(Default)]
pub struct CallRows {
    channels: Vec<i64>,
    call_ids: Vec<String>,
    froms: Vec<Option<String>>,
    tos: Vec<Option<String>>,
    events: Vec<String>,
    directions: Vec<Option<String>>,
    statuses: Vec<Option<String>>,
    ats: Vec<Option<f64>>,
    starts: Vec<Option<f64>>,
    ends: Vec<Option<f64>>,
    durations: Vec<Option<i32>>,
    payloads: Vec<JsonB>,
}

impl CallRows {
    pub fn push(&mut self, channel_id: i64, c: &webhook::Call) {
        self.channels.push(channel_id);
        self.call_ids.push(c.call_id.clone());
        self.froms.push(c.from.clone());
        self.tos.push(c.to.clone());
        self.events.push(c.event.clone());
        self.directions.push(c.direction.clone());
        self.statuses.push(c.status.clone());
        self.ats.push(c.timestamp.map(|t| t as f64));
        self.starts.push(c.start_time.map(|t| t as f64));
        self.ends.push(c.end_time.map(|t| t as f64));
        self.durations.push(c.duration.and_then(|d| i32::try_from(d).ok()));
        self.payloads.push(JsonB(c.raw.clone()));
    }
}

/// Stores all call events at once (see _wa_receive_calls).
pub fn receive_calls(rows: CallRows) {
    if rows.call_ids.is_empty() {
        return;
    }
    let _: Option<i32> = get_one_prepared(
        "SELECT _wa_receive_calls($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            rows.channels.into(),
            rows.call_ids.into(),
            rows.froms.into(),
            rows.tos.into(),
            rows.events.into(),
            rows.directions.into(),
            rows.statuses.into(),
            rows.ats.into(),
            rows.starts.into(),
            rows.ends.into(),
            rows.durations.into(),
            rows.payloads.into(),
        ],
    );
}

/// Stores all echoes at once as outbound rows; returns how many were new.
pub fn receive_echoes(rows: EchoRows) -> i64 {
    if rows.wamids.is_empty() {
        return 0;
    }
    let added: Option<i32> = get_one_prepared(
        "SELECT _wa_receive_echoes($1, $2, $3, $4, $5, $6, $7)",
        &[
            rows.channels.into(),
            rows.wamids.into(),
            rows.recipients.into(),
            rows.types.into(),
            rows.bodies.into(),
            rows.sent_ats.into(),
            rows.payloads.into(),
        ],
    );
    i64::from(added.unwrap_or(0))
}

/// Stores all `rows` at once and applies them; returns how many were new.
pub fn receive_statuses(rows: StatusRows) -> i64 {
    if rows.is_empty() {
        return 0;
    }
    let added: Option<i32> = get_one_prepared(
        "SELECT _wa_receive_statuses($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        &[
            rows.channels.into(),
            rows.wamids.into(),
            rows.statuses.into(),
            rows.status_ats.into(),
            rows.recipients.into(),
            rows.codes.into(),
            rows.titles.into(),
            rows.details.into(),
            rows.payloads.into(),
            rows.pricing_models.into(),
            rows.pricing_types.into(),
            rows.pricing_categories.into(),
            rows.billables.into(),
            rows.participants.into(),
            rows.outbox_ids.into(),
        ],
    );
    i64::from(added.unwrap_or(0))
}

/// Group webhook events gathered for `_wa_receive_group_events`, one array per column.
#[derive(Default)]
pub struct GroupEventRows {
    channels: Vec<i64>,
    group_ids: Vec<String>,
    kinds: Vec<String>,
    ats: Vec<Option<f64>>,
    subjects: Vec<Option<String>>,
    descriptions: Vec<Option<String>>,
    invite_links: Vec<Option<String>>,
    approval_modes: Vec<Option<String>>,
    added: Vec<JsonB>,
    removed: Vec<JsonB>,
    failed: Vec<bool>,
    payloads: Vec<JsonB>,
}

impl GroupEventRows {
    pub fn push(&mut self, channel_id: i64, g: &webhook::GroupEvent) {
        self.channels.push(channel_id);
        self.group_ids.push(g.group_id.clone());
        self.kinds.push(g.kind.clone());
        self.ats.push(g.timestamp.map(|t| t as f64));
        self.subjects.push(g.subject.clone());
        self.descriptions.push(g.description.clone());
        self.invite_links.push(g.invite_link.clone());
        self.approval_modes.push(g.join_approval_mode.clone());
        self.added.push(JsonB(serde_json::json!(g.added)));
        self.removed.push(JsonB(serde_json::json!(g.removed)));
        self.failed.push(g.failed);
        self.payloads.push(JsonB(g.raw.clone()));
    }
}

/// Stores all group events at once, in order (see _wa_receive_group_events).
pub fn receive_group_events(rows: GroupEventRows) {
    if rows.group_ids.is_empty() {
        return;
    }
    let _: Option<i32> = get_one_prepared(
        "SELECT _wa_receive_group_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            rows.channels.into(),
            rows.group_ids.into(),
            rows.kinds.into(),
            rows.ats.into(),
            rows.subjects.into(),
            rows.descriptions.into(),
            rows.invite_links.into(),
            rows.approval_modes.into(),
            rows.added.into(),
            rows.removed.into(),
            rows.failed.into(),
            rows.payloads.into(),
        ],
    );
}

/// Messages of a shared chat history gathered for `_wa_receive_history`, one array per column.
#[derive(Default)]
pub struct HistoryRows {
    channels: Vec<i64>,
    wamids: Vec<String>,
    customers: Vec<Option<String>>,
    from_business: Vec<bool>,
    types: Vec<String>,
    bodies: Vec<Option<String>>,
    sent_ats: Vec<Option<f64>>,
    statuses: Vec<Option<String>>,
    payloads: Vec<JsonB>,
}

impl HistoryRows {
    pub fn push(&mut self, channel_id: i64, h: &webhook::HistoryMessage) {
        self.channels.push(channel_id);
        self.wamids.push(h.message.wamid.clone());
        self.customers.push(h.customer.clone());
        self.from_business.push(h.from_business);
        self.types.push(h.message.kind.clone());
        self.bodies.push(h.message.text.clone());
        self.sent_ats.push(h.message.timestamp.map(|t| t as f64));
        self.statuses.push(h.status.clone());
        self.payloads.push(JsonB(h.message.raw.clone()));
    }
}

/// Stores a chat history's messages at once; returns how many were new.
pub fn receive_history(rows: HistoryRows) -> i64 {
    if rows.wamids.is_empty() {
        return 0;
    }
    let added: Option<i32> = get_one_prepared(
        "SELECT _wa_receive_history($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            rows.channels.into(),
            rows.wamids.into(),
            rows.customers.into(),
            rows.from_business.into(),
            rows.types.into(),
            rows.bodies.into(),
            rows.sent_ats.into(),
            rows.statuses.into(),
            rows.payloads.into(),
        ],
    );
    i64::from(added.unwrap_or(0))
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

/// Contacts of the WhatsApp Business app gathered for `_wa_apply_contact_syncs`.
#[derive(Default)]
pub struct ContactSyncRows {
    channels: Vec<i64>,
    wa_ids: Vec<String>,
    names: Vec<Option<String>>,
    actions: Vec<String>,
}

impl ContactSyncRows {
    pub fn push(&mut self, channel_id: i64, c: &webhook::ContactSync) {
        self.channels.push(channel_id);
        self.wa_ids.push(c.wa_id.clone());
        self.names.push(c.full_name.clone());
        self.actions.push(c.action.clone());
    }
}

/// Applies the business app's contacts, in order (see _wa_apply_contact_syncs).
pub fn apply_contact_syncs(rows: ContactSyncRows) {
    if rows.wa_ids.is_empty() {
        return;
    }
    let _: Option<i32> = get_one_prepared(
        "SELECT _wa_apply_contact_syncs($1, $2, $3, $4)",
        &[rows.channels.into(), rows.wa_ids.into(), rows.names.into(), rows.actions.into()],
    );
}

// ---------------------------------------------------------------------------------------------
// Outbox

/// A message claimed for sending: its status is `sending` until the result is recorded.
/// (Its `Debug` leaves the access token out.)
#[derive(Clone)]
pub struct Claimed {
    pub id: i64,
    pub channel_id: i64,
    pub max_per_second: i32,
    pub attempts: i32,
    pub phone_number_id: String,
    pub graph_api_version: String,
    pub access_token: String,
    pub request: String,
    pub recipient: String,
    /// The message's type (`text`, `template`, ..., `mark_read`).
    pub kind: String,
    /// Posted to the Marketing Messages API (`/marketing_messages`) rather than `/messages`.
    pub marketing_messages: bool,
    /// Its channel's Graph API is unreachable: this send is the probe that tells whether it
    /// answers again (see wa_channels.unreachable_since).
    pub probe: bool,
    /// Past its `expires_at`: failed instead of sent (see _wa_expire).
    pub expired: bool,
}

/// Analyzes `table` (one of the extension's) when it changed by more than half since it was
/// last analyzed; `None` if the extension is not installed.
///
/// A burst of messages can grow the queue from nothing to 100,000 rows in the minute before
/// autovacuum looks at it, and a new inbox fills its contacts and conversations from nothing:
/// on statistics that say "empty" the planner reads whole indexes where one probe would do
/// (measured: a lookup by id that scanned an index of every message, for each message sent;
/// the unread list as a bitmap scan and a sort, 28 ms instead of 0.2). Fresh statistics also
/// invalidate the plans every session has cached.
pub fn analyze_if_stale(table: &str) -> Option<bool> {
    if !use_extension_schema() {
        return None;
    }
    let stale: Option<bool> = ok(Spi::get_one_with_args(
        "SELECT pg_catalog.pg_stat_get_mod_since_analyze(c.oid) > 1000 + 0.5 * greatest(c.reltuples, 0)
           FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)",
        &[table.into()],
    ));
    if stale == Some(true) {
        // SKIP_LOCKED: autovacuum may be at it already. (The name is one of a fixed list.)
        ok(Spi::run(&format!("ANALYZE (SKIP_LOCKED) {table}")));
    }
    Some(stale == Some(true))
}

/// Claims up to `max_messages` due messages; `budgets` limits channels by id (see _wa_claim_due).
pub fn claim_due(
    max_messages: i32,
    default_version: &str,
    budgets: serde_json::Map<String, serde_json::Value>,
) -> Vec<Claimed> {
    Spi::connect_mut(|client| {
        let rows = ok(client.update(
            "SELECT id, channel_id, max_per_second, attempts, phone_number_id, graph_api_version, access_token, request,
                    recipient, kind, endpoint, probe, expired
               FROM _wa_claim_due($1, $2, $3)",
            None,
            &[max_messages.into(), default_version.into(), JsonB(serde_json::Value::Object(budgets)).into()],
        ));
        rows.map(|row| Claimed {
            id: ok(row.get(1)).unwrap_or_default(),
            channel_id: ok(row.get(2)).unwrap_or_default(),
            max_per_second: ok(row.get(3)).unwrap_or(80),
            attempts: ok(row.get(4)).unwrap_or_default(),
            phone_number_id: ok(row.get(5)).unwrap_or_default(),
            graph_api_version: ok(row.get(6)).unwrap_or_default(),
            access_token: ok(row.get(7)).unwrap_or_default(),
            request: ok(row.get(8)).unwrap_or_default(),
            recipient: ok(row.get(9)).unwrap_or_default(),
            kind: ok(row.get(10)).unwrap_or_default(),
            marketing_messages: ok(row.get::<String>(11)).is_some_and(|e| e == "marketing_messages"),
            probe: ok(row.get(12)).unwrap_or_default(),
            expired: ok(row.get(13)).unwrap_or_default(),
        })
        .collect()
    })
}

/// A media download claimed by the delivery worker (status `downloading`). (Its `Debug`
/// leaves the access token out.)
#[derive(Clone)]
pub struct MediaJob {
    pub message_id: i64,
    pub media_id: String,
    pub expected_sha256: Option<String>,
    pub attempts: i32,
    pub phone_number_id: String,
    pub graph_api_version: String,
    pub access_token: String,
}

pub fn claim_media(max_jobs: i32, default_version: &str) -> Vec<MediaJob> {
    Spi::connect_mut(|client| {
        let rows = ok(client.update(
            "SELECT message_id, media_id, expected_sha256, attempts, phone_number_id, graph_api_version, access_token
               FROM _wa_claim_media($1, $2)",
            None,
            &[max_jobs.into(), default_version.into()],
        ));
        rows.map(|row| MediaJob {
            message_id: ok(row.get(1)).unwrap_or_default(),
            media_id: ok(row.get(2)).unwrap_or_default(),
            expected_sha256: ok(row.get(3)),
            attempts: ok(row.get(4)).unwrap_or_default(),
            phone_number_id: ok(row.get(5)).unwrap_or_default(),
            graph_api_version: ok(row.get(6)).unwrap_or_default(),
            access_token: ok(row.get(7)).unwrap_or_default(),
        })
        .collect()
    })
}

/// Ends a download job (see _wa_finish_media); `retry_in` puts it back in the queue instead.
#[allow(clippy::too_many_arguments)]
pub fn finish_media(
    message_id: i64,
    status: &str,
    mime_type: Option<&str>,
    sha256: Option<&str>,
    size: Option<u64>,
    content: Option<&[u8]>,
    error: Option<&str>,
    retry_in: Option<f64>,
) {
    let size = size.and_then(|s| i64::try_from(s).ok());
    ok(Spi::run_with_args(
        "SELECT _wa_finish_media($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            message_id.into(),
            status.into(),
            mime_type.into(),
            sha256.into(),
            size.into(),
            content.into(),
            error.into(),
            retry_in.into(),
        ],
    ));
}

/// The channel of this message refused its token: pause its queue, requeue the message.
pub fn pause_channel(id: i64, reason: &str) {
    ok(Spi::run_with_args("SELECT _wa_pause_channel($1, $2)", &[id.into(), reason.into()]));
}

/// The Graph API answers this channel with transport errors and 5xx only, since `since`: its
/// queue waits for a probe every `probe_every` (see _wa_channel_unreachable).
pub fn channel_unreachable(channel_id: i64, since: std::time::SystemTime, probe_every: std::time::Duration) {
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

/// Fails claimed messages past their `expires_at` (see _wa_expire).
pub fn expire(ids: &[i64]) {
    ok(Spi::run_with_args("SELECT _wa_expire($1)", &[ids.to_vec().into()]));
}

/// Seconds until the next queued message is due, if any is queued.
pub fn next_due_in() -> Option<f64> {
    ok(Spi::get_one("SELECT _wa_next_due_in()"))
}

/// Claimed messages and downloads that a restart interrupted go back to their queues; the
/// messages fall due after `resend_after` (see _wa_requeue_interrupted).
pub fn requeue_interrupted(resend_after: std::time::Duration) -> i32 {
    ok(Spi::run("SELECT _wa_requeue_media()"));
    ok(Spi::get_one_with_args("SELECT _wa_requeue_interrupted($1)", &[resend_after.as_secs_f64().into()])).unwrap_or(0)
}

/// A claimed message goes back to the queue for `delay_seconds`, unsent (see _wa_defer).
pub fn defer(id: i64, delay_seconds: f64) {
    ok(Spi::run_with_args("SELECT _wa_defer($1, $2)", &[id.into(), delay_seconds.into()]));
}

/// Records sends Meta accepted (id, wamid), all in one statement (see _wa_mark_sent_all).
pub fn mark_sent(sends: &[(i64, Option<&str>)]) {
    let ids: Vec<i64> = sends.iter().map(|s| s.0).collect();
    let wamids: Vec<Option<&str>> = sends.iter().map(|s| s.1).collect();
    ok(Spi::run_with_args("SELECT _wa_mark_sent_all($1, $2)", &[ids.into(), wamids.into()]));
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
