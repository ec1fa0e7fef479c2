//! How a worker's main thread sleeps: until its latch is set (a commit woke it, a signal
//! arrived), its helper threads have something for it, or a timeout passes. Helper threads
//! cannot set the latch (pgrx forbids Postgres calls off the main thread), so they write a byte
//! to a socket pair instead, and the main thread waits on the latch and that socket together
//! with `WaitLatchOrSocket`, as pg_net waits on its latch and curl's sockets.

use pgrx::bgworkers::BackgroundWorker;
use pgrx::pg_sys;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

/// The helper threads' end: cheap to clone, safe to call from any thread, never blocks.
#[derive(Clone)]
pub struct Waker(Arc<UnixStream>);

impl Waker {
    pub fn wake(&self) {
        // A full socket buffer means a wake-up is already pending: nothing is lost.
        let _ = (&*self.0).write(&[1]);
    }
}

/// The main thread's end.
pub struct Wakeups(UnixStream);

pub fn pair() -> (Waker, Wakeups) {
    let (a, b) = UnixStream::pair().expect("a socket pair");
    a.set_nonblocking(true).expect("non-blocking socket");
    b.set_nonblocking(true).expect("non-blocking socket");
    (Waker(Arc::new(a)), Wakeups(b))
}

impl Wakeups {
    /// Sleeps until the latch is set, a helper thread wakes us, or `timeout` passes; then
    /// handles interrupts (a cancel only inside the worker's transactions: see
    /// [`crate::pg::transaction`]). Returns false once SIGTERM has arrived (time to exit). The process
    /// exits by itself if the postmaster dies.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let events =
            pg_sys::WL_LATCH_SET | pg_sys::WL_SOCKET_READABLE | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH;
        let millis = timeout.as_millis().min(i32::MAX as u128) as std::ffi::c_long;
        unsafe {
            pg_sys::WaitLatchOrSocket(
                pg_sys::MyLatch,
                events as i32,
                self.0.as_raw_fd(),
                millis,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        pgrx::check_for_interrupts!();
        // Drain it: a wake-up written from now on makes the socket readable again.
        let mut buf = [0u8; 256];
        while matches!((&self.0).read(&mut buf), Ok(n) if n > 0) {}
        !BackgroundWorker::sigterm_received()
    }
}
