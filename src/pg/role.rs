//! Primary or standby. The workers are registered to start when recovery has finished
//! (`BgWorkerStart_RecoveryFinished`), so on a hot standby the postmaster starts none of them
//! and starts them all when the standby is promoted. A background worker does not stop or
//! start by itself when the role changes, though, so each also checks at start that the server
//! is a primary, and waits, bound to no port, while it is not.

use crate::log;
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

/// Whether the transaction just committed may be missing on the synchronous standby. A COMMIT
/// that waits for the standby (synchronous replication) returns, committed only locally, when
/// the postmaster dies meanwhile: PostgreSQL then sets `ProcDiePending` and tells a client
/// session nothing (SyncRepWaitForLSN). A failover follows and the standby, without that
/// commit, becomes the primary. So the listener must not answer 200 for it (Meta redelivers
/// what got no 200; if the commit did survive, the UNIQUE constraints make the redelivery a
/// no-op), and the delivery worker must not send messages whose claim may be lost (the new
/// primary would send them again).
pub fn commit_may_be_lost() -> bool {
    unsafe { pg_sys::ProcDiePending != 0 }
}
