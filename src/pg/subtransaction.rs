//! Runs one unit of work in its own subtransaction, so that an ERROR in it (a constraint
//! violation, a malformed item) rolls back that unit alone, not the whole batch, and does not
//! end the worker. This is the sequence PL/pgSQL uses for an EXCEPTION block.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Why a subtransaction rolled back.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    /// A deadlock, a lock or statement timeout, a serialization failure, no memory or disk: the
    /// same work may well succeed later, so a webhook should be redelivered rather than acked.
    pub transient: bool,
}

/// Runs `f` in a subtransaction of the current transaction. `Ok` releases (keeps) its work;
/// an ERROR or panic rolls it back and comes back as `Err(message)`.
pub fn run<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    run_classified(f).map_err(|failure| failure.message)
}

/// [`run`], telling transient failures from the others.
pub fn run_classified<R>(f: impl FnOnce() -> R) -> Result<R, Failure> {
    unsafe {
        let memory_context = pg_sys::CurrentMemoryContext;
        let resource_owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(memory_context);
        let result = catch_unwind(AssertUnwindSafe(f));
        match result {
            Ok(value) => {
                pg_sys::ReleaseCurrentSubTransaction();
                pg_sys::MemoryContextSwitchTo(memory_context);
                pg_sys::CurrentResourceOwner = resource_owner;
                Ok(value)
            }
            Err(payload) => {
                pg_sys::MemoryContextSwitchTo(memory_context);
                pg_sys::FlushErrorState();
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
                pg_sys::MemoryContextSwitchTo(memory_context);
                pg_sys::CurrentResourceOwner = resource_owner;
                Err(Failure { message: panic_message(payload.as_ref()), transient: is_transient(payload.as_ref()) })
            }
        }
    }
}

/// Runs `f` in a transaction of its own and commits it. If `f` or the COMMIT itself raises an
/// ERROR, the transaction is rolled back and the ERROR comes back as `Err(message)`, so that the
/// worker goes on. A COMMIT that may not have reached the synchronous standby (see
/// [`crate::pg::role::commit_may_be_lost`]) is an `Err` too: nobody may be told it committed (pgrx's `BackgroundWorker::transaction` would end the worker instead: for the
/// listener, every request waiting on that batch would then get no answer at all).
pub fn transaction<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    unsafe {
        let memory_context = pg_sys::CurrentMemoryContext;
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        let result = catch_unwind(AssertUnwindSafe(|| {
            let value = f();
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
            value
        }));
        match result {
            Ok(_) if crate::pg::role::commit_may_be_lost() => {
                Err("the COMMIT may not have reached the synchronous standby: the server is going down".to_string())
            }
            Ok(value) => Ok(value),
            Err(payload) => {
                pg_sys::MemoryContextSwitchTo(memory_context);
                pg_sys::FlushErrorState();
                pg_sys::AbortCurrentTransaction();
                pg_sys::MemoryContextSwitchTo(memory_context);
                Err(panic_message(payload.as_ref()))
            }
        }
    }
}

fn is_transient(payload: &(dyn std::any::Any + Send)) -> bool {
    use pgrx::PgSqlErrorCode::*;
    let Some(CaughtError::PostgresError(report)) = payload.downcast_ref::<CaughtError>() else { return false };
    matches!(
        report.sql_error_code(),
        ERRCODE_T_R_DEADLOCK_DETECTED
            | ERRCODE_T_R_SERIALIZATION_FAILURE
            | ERRCODE_LOCK_NOT_AVAILABLE
            | ERRCODE_QUERY_CANCELED
            | ERRCODE_OUT_OF_MEMORY
            | ERRCODE_DISK_FULL
            | ERRCODE_INSUFFICIENT_RESOURCES
    )
}

/// The text of a caught ERROR or panic (Postgres errors arrive as `CaughtError`, not strings).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(e) = payload.downcast_ref::<CaughtError>() {
        match e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) | CaughtError::RustPanic { ereport: r, .. } => {
                match r.detail() {
                    Some(detail) => format!("{} ({detail})", r.message()),
                    None => r.message().to_string(),
                }
            }
        }
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}
