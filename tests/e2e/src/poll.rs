//! Waiting for what happens asynchronously: poll until it is there, or a deadline passes.

use std::time::{Duration, Instant};

/// Generous deadline for anything asynchronous (a worker noticing a commit, a retry).
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Calls `f` until it returns `Some`, or [`DEADLINE`] passes.
pub fn poll<T>(f: impl FnMut() -> Option<T>) -> Option<T> {
    poll_within(DEADLINE, f)
}

/// [`poll`] with a deadline of its own, for what takes longer by design (a chaos test's load).
pub fn poll_within<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
