//! A transaction of a worker's own, committed, whose failure comes back as an `Err` instead of
//! ending the worker (as pgrx's `BackgroundWorker::transaction` would). Units of work inside it
//! each take a subtransaction ([`crate::pg::subtransaction`]).
//!
//! It is also the only place where a cancel (`pg_cancel_backend`, a statement timeout) reaches a
//! worker, as a cancel reaches a session only while it runs a statement: the workers hold
//! cancels from their start ([`hold_cancels`]). Let through anywhere, a cancel would raise an
//! ERROR at the next check for interrupts outside any transaction of ours (in a sleep, a log
//! line, a reload of the channels) and end the worker.

use crate::pg::subtransaction::panic_message;
use pgrx::pg_sys;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `f` in a transaction of its own and commits it. If `f` or the COMMIT itself raises an
/// ERROR, the transaction is rolled back and the ERROR comes back as `Err(message)`, so that the
/// worker goes on. A COMMIT that may not have reached the synchronous standby (see
/// [`crate::pg::role::commit_may_be_lost`]) is an `Err` too: nobody may be told it committed.
/// (pgrx's `BackgroundWorker::transaction` would end the worker instead: for the listener,
/// every request waiting on that batch would then get no answer at all.)
pub fn run<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    let held = unsafe { pg_sys::QueryCancelHoldoffCount };
    unsafe {
        // A cancel that came while no transaction of ours ran was meant for none.
        pg_sys::QueryCancelPending = 0;
        pg_sys::QueryCancelHoldoffCount = 0;
    }
    let result = run_cancellable(f);
    unsafe { pg_sys::QueryCancelHoldoffCount = held };
    result
}

/// Holds cancels for the rest of the worker's life, but inside [`run`]. Called first thing by
/// every worker.
pub fn hold_cancels() {
    unsafe { pg_sys::QueryCancelHoldoffCount += 1 };
}

fn run_cancellable<R>(f: impl FnOnce() -> R) -> Result<R, String> {
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
