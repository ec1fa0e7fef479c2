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
    pub cause: Cause,
}

/// Whose fault a failed item is: it decides whether a webhook is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The item's own content: a data exception (SQLSTATE class 22: a time out of range, text
    /// Postgres cannot hold, a number too large). The same bytes fail the same way however often
    /// Meta sends them, so the item is kept raw, counted, and acknowledged.
    Content,
    /// Anything else: a user's trigger or a constraint the extension did not write, a lock or
    /// a deadlock, an internal, I/O or resource error, a bug. The same item may be stored later,
    /// so the POST is answered 500 and Meta sends it again.
    Database,
}

/// Runs `f` in a subtransaction of the current transaction. `Ok` releases (keeps) its work;
/// an ERROR or panic rolls it back and comes back as `Err(message)`.
pub fn run<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    run_classified(f).map_err(|failure| failure.message)
}

/// [`run`], telling a failure of the item's own content from a failure of the database.
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
                Err(Failure { message: panic_message(payload.as_ref()), cause: cause(payload.as_ref()) })
            }
        }
    }
}

/// Class 22 (data exception) is about the values given; every other ERROR, and a panic, is not.
fn cause(payload: &(dyn std::any::Any + Send)) -> Cause {
    let Some(CaughtError::PostgresError(report)) = payload.downcast_ref::<CaughtError>() else {
        return Cause::Database;
    };
    if is_data_exception(report.sql_error_code()) { Cause::Content } else { Cause::Database }
}

/// Whether `code` is of SQLSTATE class 22. An SQLSTATE is packed six bits a character, the
/// class in the low twelve.
fn is_data_exception(code: pgrx::PgSqlErrorCode) -> bool {
    const CLASS: isize = 0xFFF;
    (code as isize) & CLASS == (pgrx::PgSqlErrorCode::ERRCODE_DATA_EXCEPTION as isize) & CLASS
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
