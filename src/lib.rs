//! whatsapp_channel: a WhatsApp Cloud API channel inside PostgreSQL.
//!
//! The data path, in the order a message travels:
//! - inbound: [`webhook_http`] (HTTP threads, no Postgres calls: routing, body limits,
//!   signatures, parsing) hands verified payloads to [`webhook_listener`] (the worker's main
//!   thread), which stores them through [`store`] and answers 200 only after COMMIT;
//! - outbound: `wa_send_text()` (in `sql/functions.sql`) queues a row and [`wake`]s
//!   [`delivery`] at commit; it sends through [`graph_client`] and records the result via [`store`].
//!
//! Pure logic (signatures, phone numbers, payloads, Graph API bodies and errors) lives in the
//! `whatsapp_cloud` crate and is unit-tested without Postgres.

use pgrx::bgworkers::BackgroundWorkerBuilder;
use pgrx::prelude::*;
use std::time::Duration;

mod api;
mod delivery;
mod graph_client;
mod graph_session;
mod guc;
mod inbound;
mod maintenance;
mod media;
mod store;
mod subtransaction;
mod templates;
mod wake;
mod wakeup;
mod webhook_http;
mod webhook_listener;

::pgrx::pg_module_magic!();

pgrx::extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
pgrx::extension_sql_file!("../sql/functions.sql", name = "functions", finalize);

/// After a failure, a worker is started again this long later by the postmaster.
const RESTART_AFTER: Duration = Duration::from_secs(5);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
    // Workers and shared memory exist only when preloaded; without preloading, the SQL
    // functions still work (wa_verify_signature, wa_add_channel, queueing), and the server
    // log says why nothing is received or sent.
    if unsafe { !pg_sys::process_shared_preload_libraries_in_progress || pg_sys::IsBinaryUpgrade } {
        return;
    }
    wake::init_shared_memory();
    BackgroundWorkerBuilder::new("whatsapp_channel webhook listener")
        .set_type("whatsapp_channel webhook listener")
        .set_library("whatsapp_channel")
        .set_function("wa_webhook_listener_main")
        .enable_spi_access()
        .set_restart_time(Some(RESTART_AFTER))
        .load();
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
