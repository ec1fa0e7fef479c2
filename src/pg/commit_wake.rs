//! Waking a worker at commit time (pg_net's design). `wa_send_text()` registers a commit
//! callback once per transaction; at COMMIT it sets the delivery worker's latch, unless a wake
//! is already pending. So the worker never wakes for rows it cannot see yet, and a
//! transaction that queues 10,000 messages wakes it once. A change to a channel or its
//! secrets does the same for every webhook listener, and moves a generation number on, so the
//! listeners re-read their channels when they changed and never because a request asked.

use crate::warning;
use pgrx::prelude::*;
use pgrx::{PgAtomic, PgXactCallbackEvent, pg_shmem_init, register_xact_callback};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

/// `pgprocno` of the running delivery worker, -1 when none runs.
static DELIVERY_PROCNO: PgAtomic<AtomicI32> = unsafe { PgAtomic::new(c"whatsapp_channel_delivery_procno") };
/// `pgprocno` of the running maintenance worker, -1 when none runs (for `worker_up` only).
static MAINTENANCE_PROCNO: PgAtomic<AtomicI32> = unsafe { PgAtomic::new(c"whatsapp_channel_maintenance_procno") };
/// Set by the first committing waker, cleared by the worker before it looks for work.
static WAKE_PENDING: PgAtomic<AtomicBool> = unsafe { PgAtomic::new(c"whatsapp_channel_wake_pending") };
/// Set by a commit that queued an action (the action outbox), cleared by the worker when it
/// looks for actions: the worker reads actions only then (or when one falls due), never on the
/// way of a turn that claims messages.
static ACTIONS_PENDING: PgAtomic<AtomicBool> = unsafe { PgAtomic::new(c"whatsapp_channel_actions_pending") };
/// The same for media downloads: set by a commit that stored media to download.
static MEDIA_PENDING: PgAtomic<AtomicBool> = unsafe { PgAtomic::new(c"whatsapp_channel_media_pending") };
/// Most webhook listener workers (`whatsapp_channel.listener_workers`).
pub const MAX_LISTENERS: usize = 16;
/// `pgprocno` of each running webhook listener by its slot, -1 where none runs.
static LISTENER_PROCNOS: PgAtomic<[AtomicI32; MAX_LISTENERS]> =
    unsafe { PgAtomic::new(c"whatsapp_channel_listener_procnos") };
/// Moved on by every committed change to `wa_channels` or `wa_channel_secrets`.
static CHANNELS_GENERATION: PgAtomic<AtomicU64> = unsafe { PgAtomic::new(c"whatsapp_channel_channels_generation") };
/// True in the postmaster and every backend forked from it when the library was preloaded,
/// i.e. when the shared memory above exists.
static PRELOADED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Whether this backend's current transaction already has the commit callback.
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// The same for the actions' callback.
    static ACTIONS_REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// The same for the media's callback.
    static MEDIA_REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// The same for the listener's callback.
    static LISTENER_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

pub fn init_shared_memory() {
    pg_shmem_init!(DELIVERY_PROCNO = AtomicI32::new(-1));
    pg_shmem_init!(MAINTENANCE_PROCNO = AtomicI32::new(-1));
    pg_shmem_init!(WAKE_PENDING = AtomicBool::new(false));
    pg_shmem_init!(ACTIONS_PENDING = AtomicBool::new(false));
    pg_shmem_init!(MEDIA_PENDING = AtomicBool::new(false));
    pg_shmem_init!(LISTENER_PROCNOS = [const { AtomicI32::new(-1) }; MAX_LISTENERS]);
    pg_shmem_init!(CHANNELS_GENERATION = AtomicU64::new(0));
    PRELOADED.store(true, Ordering::Relaxed);
}

/// Arranges for the delivery worker to be woken when the current transaction commits.
pub fn delivery_at_commit() {
    if !PRELOADED.load(Ordering::Relaxed) {
        warning!(
            "whatsapp_channel is not in shared_preload_libraries: no delivery worker runs, so nothing queued is sent; add it and restart the server"
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

/// Work besides messages that the delivery worker looks for only when a commit queued some or
/// some falls due: a turn that claims messages costs no query more for it.
#[derive(Debug, Clone, Copy)]
pub enum SideQueue {
    /// The action outbox (sql/outbound_actions.sql).
    Actions,
    /// Media downloads (wa_media).
    Media,
}

impl SideQueue {
    fn pending(self) -> &'static AtomicBool {
        match self {
            SideQueue::Actions => ACTIONS_PENDING.get(),
            SideQueue::Media => MEDIA_PENDING.get(),
        }
    }

    fn registered(self) -> &'static std::thread::LocalKey<Cell<bool>> {
        match self {
            SideQueue::Actions => &ACTIONS_REGISTERED,
            SideQueue::Media => &MEDIA_REGISTERED,
        }
    }
}

/// Arranges for the delivery worker to look at `queue` when the current transaction commits.
pub fn side_queue_at_commit(queue: SideQueue) {
    if !PRELOADED.load(Ordering::Relaxed) {
        delivery_at_commit(); // (says why nothing will be done)
        return;
    }
    let registered = queue.registered();
    if registered.get() {
        return;
    }
    registered.set(true);
    register_xact_callback(PgXactCallbackEvent::Commit, move || {
        queue.registered().set(false);
        // (before the wake, so that the turn it starts sees it)
        queue.pending().store(true, Ordering::Release);
        wake_delivery();
    });
    register_xact_callback(PgXactCallbackEvent::Abort, move || queue.registered().set(false));
}

/// Called by the delivery worker when it decides whether to look at `queue`: whether a commit
/// queued something in it since it last looked.
pub fn take_side_queue_wake(queue: SideQueue) -> bool {
    PRELOADED.load(Ordering::Relaxed) && queue.pending().swap(false, Ordering::AcqRel)
}

fn wake_delivery() {
    if WAKE_PENDING.get().swap(true, Ordering::AcqRel) {
        return; // a wake is already on its way
    }
    set_latch_of(DELIVERY_PROCNO.get().load(Ordering::Acquire)); // not running: it scans the queue when it starts
}

/// Sets the latch of the process with this `pgprocno`, if one (>= 0) is given.
fn set_latch_of(procno: i32) {
    if procno < 0 {
        return;
    }
    unsafe {
        let proc_ = (*pg_sys::ProcGlobal).allProcs.add(procno as usize);
        pg_sys::SetLatch(&raw mut (*proc_).procLatch);
    }
}

/// This process's number in the proc array, by which others set its latch. PostgreSQL 17
/// moved it out of `PGPROC` into the global `MyProcNumber` (a `ProcNumber`, still the index
/// into `ProcGlobal->allProcs`).
fn my_procno() -> i32 {
    #[cfg(feature = "pg15")]
    unsafe {
        (*pg_sys::MyProc).pgprocno
    }
    #[cfg(feature = "pg18")]
    unsafe {
        pg_sys::MyProcNumber
    }
}

/// The workers that run once per server (the webhook listeners have slots of their own).
#[derive(Debug, Clone, Copy)]
pub enum SingleWorker {
    /// Commits that queue messages wake it.
    Delivery,
    /// Registered so that `worker_up` can tell it runs.
    Maintenance,
}

impl SingleWorker {
    pub fn name(self) -> &'static str {
        match self {
            SingleWorker::Delivery => "delivery worker",
            SingleWorker::Maintenance => "maintenance worker",
        }
    }

    fn procno(self) -> &'static AtomicI32 {
        match self {
            SingleWorker::Delivery => DELIVERY_PROCNO.get(),
            SingleWorker::Maintenance => MAINTENANCE_PROCNO.get(),
        }
    }
}

/// Called by a worker at start: from now on it can be woken (the delivery worker, by commits)
/// and is seen running; its procno is cleared when the process exits.
pub fn register(worker: SingleWorker) {
    worker.procno().store(my_procno(), Ordering::Release);
    let which = pg_sys::Datum::from(matches!(worker, SingleWorker::Maintenance) as usize);
    unsafe { pg_sys::on_proc_exit(Some(clear_procno), which) };
}

#[pg_guard]
unsafe extern "C-unwind" fn clear_procno(_code: std::ffi::c_int, which: pg_sys::Datum) {
    let worker = if which.value() == 1 { SingleWorker::Maintenance } else { SingleWorker::Delivery };
    worker.procno().store(-1, Ordering::Release);
}

/// Arranges for every webhook listener to re-read its channels when the current transaction
/// commits (a trigger on wa_channels and wa_channel_secrets calls it).
pub fn listener_at_commit() {
    if !PRELOADED.load(Ordering::Relaxed) || LISTENER_REGISTERED.get() {
        return;
    }
    LISTENER_REGISTERED.set(true);
    register_xact_callback(PgXactCallbackEvent::Commit, || {
        LISTENER_REGISTERED.set(false);
        CHANNELS_GENERATION.get().fetch_add(1, Ordering::AcqRel);
        for procno in LISTENER_PROCNOS.get() {
            set_latch_of(procno.load(Ordering::Acquire));
        }
    });
    register_xact_callback(PgXactCallbackEvent::Abort, || LISTENER_REGISTERED.set(false));
}

/// Called by the webhook listener in `slot` once it listens: from now on, channel changes wake
/// it, and its siblings see it bound. Its slot is cleared when the process exits.
pub fn register_listener(slot: usize) {
    LISTENER_PROCNOS.get()[slot].store(my_procno(), Ordering::Release);
    unsafe { pg_sys::on_proc_exit(Some(clear_listener_slot), pg_sys::Datum::from(slot)) };
}

#[pg_guard]
unsafe extern "C-unwind" fn clear_listener_slot(_code: std::ffi::c_int, slot: pg_sys::Datum) {
    if let Some(procno) = LISTENER_PROCNOS.get().get(slot.value()) {
        procno.store(-1, Ordering::Release);
    }
}

/// Whether a listener other than the one in `slot` is running (and so listening).
pub fn sibling_listening(slot: usize) -> bool {
    LISTENER_PROCNOS.get().iter().enumerate().any(|(i, p)| i != slot && p.load(Ordering::Acquire) >= 0)
}

/// Whether the webhook listener in `slot` runs (shared memory only: any thread may ask).
pub fn listener_running(slot: usize) -> bool {
    PRELOADED.load(Ordering::Relaxed)
        && LISTENER_PROCNOS.get().get(slot).is_some_and(|p| p.load(Ordering::Acquire) >= 0)
}

/// Whether the delivery worker runs (shared memory only: any thread may ask).
pub fn delivery_running() -> bool {
    PRELOADED.load(Ordering::Relaxed) && DELIVERY_PROCNO.get().load(Ordering::Acquire) >= 0
}

/// Whether the maintenance worker runs (shared memory only: any thread may ask).
pub fn maintenance_running() -> bool {
    PRELOADED.load(Ordering::Relaxed) && MAINTENANCE_PROCNO.get().load(Ordering::Acquire) >= 0
}

/// The channels' generation: when it differs from the one last read, they changed since.
pub fn channels_generation() -> u64 {
    if !PRELOADED.load(Ordering::Relaxed) {
        return 0;
    }
    CHANNELS_GENERATION.get().load(Ordering::Acquire)
}

/// Whether a wake is pending that the delivery worker has not taken yet. It sleeps only when
/// none is: a wake's latch may have been consumed by a wait inside its own last transaction
/// (a COMMIT waiting for a synchronous standby resets the latch), and while the flag stays
/// set no later commit sets the latch again.
pub fn wake_pending() -> bool {
    PRELOADED.load(Ordering::Relaxed) && WAKE_PENDING.get().load(Ordering::Acquire)
}

/// Called by the delivery worker right before it looks for due messages, so that a commit
/// after this point sets the latch again.
pub fn take_pending_wake() -> bool {
    WAKE_PENDING.get().swap(false, Ordering::AcqRel)
}

/// Wakes the delivery worker when the calling transaction commits (called by the enqueue).
#[pg_extern(volatile)]
fn _wa_wake_delivery() {
    delivery_at_commit();
}

/// Makes the delivery worker look for actions when the calling transaction commits (called by
/// the action outbox's enqueue, sql/outbound_actions.sql).
#[pg_extern(volatile)]
fn _wa_wake_actions() {
    side_queue_at_commit(SideQueue::Actions);
}

/// Makes the delivery worker look for media downloads when the calling transaction commits
/// (called by the inbound functions that store media, sql/inbound.sql).
#[pg_extern(volatile)]
fn _wa_wake_media() {
    side_queue_at_commit(SideQueue::Media);
}

/// Makes the webhook listener re-read its channels when the calling transaction commits
/// (called by the channel triggers of sql/channels.sql).
#[pg_extern(volatile)]
fn _wa_wake_listener() {
    listener_at_commit();
}
