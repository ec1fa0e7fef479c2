//! whatsapp_channel: a WhatsApp Cloud API channel inside PostgreSQL.
//!
//! One folder per concern, each with its SQL calls ([`store`](inbound::store) modules), its row
//! types and its `.sql` file (sql/<concern>.sql), in the order of the data path:
//! - [`channels`]: a number and its credentials (`wa_add_channel`, templates); sql/channels.sql;
//!   who may read or send on it ([`channels::access`]: grants and row-level security);
//!   sql/grants.sql;
//! - [`inbound`]: the webhook listener. [`inbound::http`] (HTTP threads, no Postgres calls:
//!   routing, body limits, signatures, parsing) hands verified payloads to
//!   [`inbound::listener`] (the worker's main thread), which stores them through the one write
//!   path ([`inbound::write_path`]) and answers 200 only after COMMIT; sql/inbound*.sql;
//! - [`outbound`]: `wa_send_text()` (SQL) queues a row and [`pg::commit_wake`]s the
//!   [`outbound::delivery`] worker at commit; it sends through the [`outbound::sender_pool`] and
//!   records the result ([`outbound::recording`]); sql/outbound.sql (the send API) and
//!   sql/outbound_delivery.sql (the worker's procedures);
//! - [`media`]: inbound files downloaded by the delivery worker's senders, outbound uploads;
//!   sql/media.sql;
//! - [`maintenance`]: the worker that deletes what outlived its retention, replays incomplete
//!   webhooks, keeps statistics fresh and serves [`metrics`];
//! - [`pg`]: what the workers need from Postgres itself: settings, transactions and
//!   subtransactions, SQL calls, waking a worker at commit or from a thread, one worker start-up.
//!
//! Tables are in sql/schema.sql, what every writer of a message derives from it in
//! sql/model.sql, the inbox's views in sql/views.sql, and who may call what in
//! sql/privileges.sql. Pure logic (signatures, phone numbers, payloads, Graph API bodies and
//! errors) lives in the `whatsapp_cloud` crate and is unit-tested without Postgres.

use pgrx::bgworkers::BackgroundWorkerBuilder;
use pgrx::prelude::*;
use std::time::Duration;

mod channels;
mod inbound;
mod maintenance;
mod media;
mod metrics;
mod outbound;
mod pg;

::pgrx::pg_module_magic!();

// The SQL half, by concern: tables first, privileges last (once every function exists), and
// in between the files that define functions, views and triggers, in a fixed order.
pgrx::extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
pgrx::extension_sql_file!("../sql/model.sql", name = "model");
pgrx::extension_sql_file!(
    "../sql/grants.sql",
    name = "grants",
    requires = [
        "model",
        channels::access::_wa_caller,
        channels::access::_wa_visible_channels,
        channels::access::_wa_visibility_changed
    ]
);
pgrx::extension_sql_file!("../sql/channels.sql", name = "channels", requires = ["grants"]);
pgrx::extension_sql_file!("../sql/inbound.sql", name = "inbound", requires = ["channels"]);
pgrx::extension_sql_file!("../sql/inbound_statuses.sql", name = "inbound_statuses", requires = ["inbound"]);
pgrx::extension_sql_file!(
    "../sql/inbound_business_app.sql",
    name = "inbound_business_app",
    requires = ["inbound_statuses"]
);
pgrx::extension_sql_file!(
    "../sql/inbound_calls_groups.sql",
    name = "inbound_calls_groups",
    requires = ["inbound_business_app"]
);
pgrx::extension_sql_file!(
    "../sql/inbound_preferences.sql",
    name = "inbound_preferences",
    requires = ["inbound_calls_groups"]
);
pgrx::extension_sql_file!("../sql/inbound_business.sql", name = "inbound_business", requires = ["inbound_preferences"]);
pgrx::extension_sql_file!("../sql/outbound.sql", name = "outbound", requires = ["inbound_business"]);
pgrx::extension_sql_file!("../sql/outbound_delivery.sql", name = "outbound_delivery", requires = ["outbound"]);
pgrx::extension_sql_file!("../sql/outbound_actions.sql", name = "outbound_actions", requires = ["outbound_delivery"]);
pgrx::extension_sql_file!("../sql/media.sql", name = "media", requires = ["outbound_actions"]);
pgrx::extension_sql_file!("../sql/views.sql", name = "views", requires = ["media"]);
pgrx::extension_sql_file!("../sql/metrics.sql", name = "metrics", requires = ["views", metrics::sql::_wa_metrics]);
pgrx::extension_sql_file!("../sql/plans.sql", name = "plans", requires = ["metrics"]);
pgrx::extension_sql_file!("../sql/privileges.sql", name = "privileges", finalize);

/// After a failure, a worker is started again this long later by the postmaster.
const RESTART_AFTER: Duration = Duration::from_secs(5);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    pg::guc::init();
    // Workers and shared memory exist only when preloaded; without preloading, the SQL
    // functions still work (wa_verify_signature, wa_add_channel, queueing), and the server
    // log says why nothing is received or sent.
    if unsafe { !pg_sys::process_shared_preload_libraries_in_progress || pg_sys::IsBinaryUpgrade } {
        return;
    }
    pg::commit_wake::init_shared_memory();
    metrics::counters::init_shared_memory();
    let listeners = pg::guc::listener_workers();
    for slot in 0..listeners {
        let name = if listeners == 1 {
            "whatsapp_channel webhook listener".to_string()
        } else {
            format!("whatsapp_channel webhook listener {}", slot + 1)
        };
        BackgroundWorkerBuilder::new(&name)
            .set_type("whatsapp_channel webhook listener")
            .set_library("whatsapp_channel")
            .set_function("wa_webhook_listener_main")
            .set_argument(Some(pg_sys::Datum::from(slot)))
            .enable_spi_access()
            .set_restart_time(Some(RESTART_AFTER))
            .load();
    }
    BackgroundWorkerBuilder::new("whatsapp_channel delivery")
        .set_type("whatsapp_channel delivery")
        .set_library("whatsapp_channel")
        .set_function("wa_delivery_main")
        .enable_spi_access()
        .set_restart_time(Some(RESTART_AFTER))
        .load();
    BackgroundWorkerBuilder::new("whatsapp_channel maintenance")
        .set_type("whatsapp_channel maintenance")
        .set_library("whatsapp_channel")
        .set_function("wa_maintenance_main")
        .enable_spi_access()
        .set_restart_time(Some(RESTART_AFTER))
        .load();
}
