//! Log lines that a cancel cannot turn into a crash. Postgres checks for interrupts at the end
//! of every log line it emits (`errfinish`), and pgrx calls `errfinish` without the guard that
//! turns a Postgres ERROR into a Rust panic. Inside a worker's own transaction, where cancels are
//! let through ([`crate::pg::transaction`]), a cancel pending at a log line would jump over the
//! Rust frames to the worker's top and end it (seen: the listener restarted by a
//! `pg_cancel_backend` that arrived while it logged an incomplete webhook). These macros, used
//! everywhere instead of pgrx's, hold cancels for the line itself: the cancel stays pending and
//! ends the next statement, as it would a session's.

/// Runs `f` (a log line) with cancels held.
pub fn holding_cancels(f: impl FnOnce()) {
    unsafe { pgrx::pg_sys::QueryCancelHoldoffCount += 1 };
    f();
    unsafe { pgrx::pg_sys::QueryCancelHoldoffCount -= 1 };
}

/// `pgrx::log!`, safe from cancels (see [`crate::pg::log`]).
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::pg::log::holding_cancels(|| ::pgrx::log!($($arg)*)) };
}

/// `pgrx::warning!`, safe from cancels (see [`crate::pg::log`]).
#[macro_export]
macro_rules! warning {
    ($($arg:tt)*) => { $crate::pg::log::holding_cancels(|| ::pgrx::warning!($($arg)*)) };
}

/// `pgrx::debug1!`, safe from cancels (see [`crate::pg::log`]).
#[macro_export]
macro_rules! debug1 {
    ($($arg:tt)*) => { $crate::pg::log::holding_cancels(|| ::pgrx::debug1!($($arg)*)) };
}
