//! Waking the delivery worker at commit time (pg_net's design): `wa_send_text()` registers a
//! commit callback once per transaction; at COMMIT it sets the worker's latch, unless a wake
//! is already pending. So the worker never wakes for rows it cannot see yet, and a
//! transaction that queues 10,000 messages wakes it once.

use pgrx::prelude::*;
use pgrx::{PgAtomic, PgXactCallbackEvent, pg_shmem_init, register_xact_callback};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// `pgprocno` of the running delivery worker, -1 when none runs.
static DELIVERY_PROCNO: PgAtomic<AtomicI32> = unsafe { PgAtomic::new(c"whatsapp_channel_delivery_procno") };
/// Set by the first committing waker, cleared by the worker before it looks for work.
static WAKE_PENDING: PgAtomic<AtomicBool> = unsafe { PgAtomic::new(c"whatsapp_channel_wake_pending") };
/// True in the postmaster and every backend forked from it when the library was preloaded,
/// i.e. when the shared memory above exists.
static PRELOADED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Whether this backend's current transaction already has the commit callback.
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

pub fn init_shared_memory() {
    pg_shmem_init!(DELIVERY_PROCNO = AtomicI32::new(-1));
    pg_shmem_init!(WAKE_PENDING = AtomicBool::new(false));
    PRELOADED.store(true, Ordering::Relaxed);
}

/// Arranges for the delivery worker to be woken when the current transaction commits.
pub fn delivery_at_commit() {
    if !PRELOADED.load(Ordering::Relaxed) {
        warning!(
            "whatsapp_channel is not in shared_preload_libraries: the message is queued, but no delivery worker runs to send it"
        );
        return;
    }
    if REGISTERED.get() {
        return;
    }
    REGISTERED.set(true);
    // The callbacks run after commit/abort: they must not raise an error or panic.
    register_xact_callback(PgXactCallbackEvent::Commit, || {
        REGISTERED.set(false);
        wake_delivery();
    });
    register_xact_callback(PgXactCallbackEvent::Abort, || REGISTERED.set(false));
}

fn wake_delivery() {
    if WAKE_PENDING.get().swap(true, Ordering::AcqRel) {
        return; // a wake is already on its way
    }
    let procno = DELIVERY_PROCNO.get().load(Ordering::Acquire);
    if procno < 0 {
        return; // not running: it scans the queue when it starts
    }
    unsafe {
        let proc_ = (*pg_sys::ProcGlobal).allProcs.add(procno as usize);
        pg_sys::SetLatch(&raw mut (*proc_).procLatch);
    }
}

/// Called by the delivery worker at start: from now on, commits wake this process.
pub fn register_delivery_worker() {
    let procno = unsafe { (*pg_sys::MyProc).pgprocno };
    DELIVERY_PROCNO.get().store(procno, Ordering::Release);
}

/// Called by the delivery worker right before it looks for due messages, so that a commit
/// after this point sets the latch again.
pub fn take_pending_wake() -> bool {
    WAKE_PENDING.get().swap(false, Ordering::AcqRel)
}
