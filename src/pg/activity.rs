//! What a worker is doing, where an operator looks first: `pg_stat_activity.state` and
//! `query` (a background worker shows there like a session, with its backend_type).

use pgrx::pg_sys;
use std::ffi::CString;

/// The worker is working on `what` (e.g. "storing 12 webhook POSTs").
pub fn busy(what: &str) {
    report(pg_sys::BackendState::STATE_RUNNING, what);
}

/// The worker waits for work; `what` says for which.
pub fn idle(what: &str) {
    report(pg_sys::BackendState::STATE_IDLE, what);
}

fn report(state: pg_sys::BackendState::Type, what: &str) {
    let text = CString::new(what.replace('\0', " ")).unwrap_or_default();
    // Copies the text into shared memory (truncated at track_activity_query_size).
    unsafe { pg_sys::pgstat_report_activity(state, text.as_ptr()) };
}
