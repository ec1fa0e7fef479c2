//! Primary or standby. The workers are registered to start when recovery has finished
//! (`BgWorkerStart_RecoveryFinished`), so on a hot standby the postmaster starts none of them
//! and starts them all when the standby is promoted. A background worker does not stop or
//! start by itself when the role changes, though, so each also checks at start that the server
//! is a primary, and waits, bound to no port, while it is not.

use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use std::time::Duration;

/// Returns once the server is a primary; `false` if asked to stop first.
pub fn wait_until_primary(worker: &str) -> bool {
    let mut said = false;
    while unsafe { pg_sys::RecoveryInProgress() } {
        if !said {
            log!("whatsapp_channel: {worker} waits: this server is a standby (in recovery)");
            said = true;
        }
        if !BackgroundWorker::wait_latch(Some(Duration::from_secs(1))) {
            return false;
        }
    }
    true
}
