//! What every background worker of the extension does first and on each reload, in one place.

use crate::log;
use crate::pg::commit_wake::{self, SingleWorker};
use crate::pg::{guc, role, transaction};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;

/// Starts a worker: signal handlers (SIGHUP reloads, SIGTERM stops), cancels held but inside
/// its own transactions (see [`transaction::hold_cancels`]), a wait while the server is a
/// standby, and a connection to `whatsapp_channel.database`. Returns that database's name, or
/// `None` if the worker was asked to stop before it could start.
pub fn start(worker: &str) -> Option<String> {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    transaction::hold_cancels();
    if !role::wait_until_primary(worker) {
        return None;
    }
    let database = guc::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    Some(database)
}

/// [`start`] for a worker that runs once per server: it also registers it (see
/// [`commit_wake::register`]) and says in the log that it started.
pub fn start_single(worker: SingleWorker) -> Option<String> {
    let database = start(&format!("the {}", worker.name()))?;
    commit_wake::register(worker);
    log!("whatsapp_channel: {} started, database \"{database}\"", worker.name());
    Some(database)
}

/// Re-reads the configuration files if a SIGHUP came since the last look; `true` if one did.
pub fn reload_if_asked() -> bool {
    if !BackgroundWorker::sighup_received() {
        return false;
    }
    unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
    true
}
