//! Runs one unit of work in its own subtransaction, so that an ERROR in it (a constraint
//! violation, a malformed item) rolls back that unit alone, not the whole batch, and does not
//! end the worker. This is the sequence PL/pgSQL uses for an EXCEPTION block.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `f` in a subtransaction of the current transaction. `Ok` releases (keeps) its work;
/// an ERROR or panic rolls it back and comes back as `Err(message)`.
pub fn run<R>(f: impl FnOnce() -> R) -> Result<R, String> {
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
                Err(panic_message(payload.as_ref()))
            }
        }
    }
}

/// The text of a caught ERROR or panic (Postgres errors arrive as `CaughtError`, not strings).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(e) = payload.downcast_ref::<CaughtError>() {
        match e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) | CaughtError::RustPanic { ereport: r, .. } => {
                r.message().to_string()
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
