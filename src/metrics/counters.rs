//! The counters behind `/metrics` and `wa_metrics`, in shared memory: plain atomics, so any
//! thread of any worker may add to them (HTTP threads included: this makes no Postgres call)
//! and the metrics endpoint reads them without asking a worker. Per channel they live in a
//! fixed number of slots claimed by channel id; channels beyond that share the last slot.

use channel_metrics::{
    BUCKETS, CHANNEL_COUNTERS, CHANNEL_GAUGES, CHANNEL_SLOTS, ChannelCounter, ChannelGauge, GLOBAL_COUNTERS,
    GlobalCounter, HISTOGRAMS, Histogram, Snapshot,
};
use pgrx::prelude::*;
use pgrx::{PGRXSharedMemory, PgAtomic, pg_shmem_init};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

#[repr(C)]
pub struct Shared {
    /// The channel id each slot counts for (0: free).
    slot_owner: [AtomicI64; CHANNEL_SLOTS],
    channel: [[AtomicU64; CHANNEL_COUNTERS]; CHANNEL_SLOTS],
    gauges: [[AtomicI64; CHANNEL_GAUGES]; CHANNEL_SLOTS],
    global: [AtomicU64; GLOBAL_COUNTERS],
    /// Per histogram: the buckets (cumulative when read), the count and the sum in micro-units.
    buckets: [[AtomicU64; BUCKETS]; HISTOGRAMS],
    counts: [AtomicU64; HISTOGRAMS],
    sums_micro: [AtomicU64; HISTOGRAMS],
    /// Whether the maintenance worker measured the queue at least once.
    gauges_measured: AtomicBool,
}

unsafe impl PGRXSharedMemory for Shared {}

static SHARED: PgAtomic<Shared> = unsafe { PgAtomic::new(c"whatsapp_channel_metrics") };
static PRELOADED: AtomicBool = AtomicBool::new(false);

pub fn init_shared_memory() {
    pg_shmem_init!(
        SHARED = Shared {
            slot_owner: [const { AtomicI64::new(0) }; CHANNEL_SLOTS],
            channel: [const { [const { AtomicU64::new(0) }; CHANNEL_COUNTERS] }; CHANNEL_SLOTS],
            gauges: [const { [const { AtomicI64::new(0) }; CHANNEL_GAUGES] }; CHANNEL_SLOTS],
            global: [const { AtomicU64::new(0) }; GLOBAL_COUNTERS],
            buckets: [const { [const { AtomicU64::new(0) }; BUCKETS] }; HISTOGRAMS],
            counts: [const { AtomicU64::new(0) }; HISTOGRAMS],
            sums_micro: [const { AtomicU64::new(0) }; HISTOGRAMS],
            gauges_measured: AtomicBool::new(false),
        }
    );
    PRELOADED.store(true, Ordering::Relaxed);
}

fn shared() -> Option<&'static Shared> {
    PRELOADED.load(Ordering::Relaxed).then(|| SHARED.get())
}

/// The slot of a channel, claimed on first use; the last slot when all are taken.
fn slot(s: &Shared, channel_id: i64) -> usize {
    for (i, owner) in s.slot_owner.iter().enumerate().take(CHANNEL_SLOTS - 1) {
        match owner.load(Ordering::Acquire) {
            id if id == channel_id => return i,
            0 => match owner.compare_exchange(0, channel_id, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return i,
                Err(id) if id == channel_id => return i,
                Err(_) => continue,
            },
            _ => continue,
        }
    }
    CHANNEL_SLOTS - 1
}

pub fn add(channel_id: i64, counter: ChannelCounter, n: u64) {
    if let Some(s) = shared().filter(|_| n > 0) {
        s.channel[slot(s, channel_id)][counter as usize].fetch_add(n, Ordering::Relaxed);
    }
}

pub fn add_global(counter: GlobalCounter) {
    add_global_n(counter, 1);
}

pub fn add_global_n(counter: GlobalCounter, n: u64) {
    if let Some(s) = shared().filter(|_| n > 0) {
        s.global[counter as usize].fetch_add(n, Ordering::Relaxed);
    }
}

pub fn observe(histogram: Histogram, value: f64) {
    let Some(s) = shared() else { return };
    let h = histogram as usize;
    if let Some(b) = histogram.bounds().iter().position(|&bound| value <= bound) {
        s.buckets[h][b].fetch_add(1, Ordering::Relaxed);
    }
    s.counts[h].fetch_add(1, Ordering::Relaxed);
    s.sums_micro[h].fetch_add((value.max(0.0) * 1e6) as u64, Ordering::Relaxed);
}

/// Sets the gauges: the queues, (channel id, queued messages, age of the oldest in ms), and
/// the webhook events still to replay, (channel id, events), for every channel with any; all
/// others are set to zero.
pub fn set_gauges(queues: &[(i64, i64, i64)], incomplete_events: &[(i64, i64)]) {
    let Some(s) = shared() else { return };
    let mut measured = [[0i64; CHANNEL_GAUGES]; CHANNEL_SLOTS];
    for &(channel_id, depth, oldest_ms) in queues {
        let m = &mut measured[slot(s, channel_id)];
        m[ChannelGauge::QueueDepth as usize] += depth;
        m[ChannelGauge::OldestQueuedMs as usize] = m[ChannelGauge::OldestQueuedMs as usize].max(oldest_ms);
    }
    for &(channel_id, events) in incomplete_events {
        measured[slot(s, channel_id)][ChannelGauge::IncompleteEvents as usize] += events;
    }
    for (gauges, values) in s.gauges.iter().zip(measured) {
        for (g, v) in gauges.iter().zip(values) {
            g.store(v, Ordering::Relaxed);
        }
    }
    s.gauges_measured.store(true, Ordering::Release);
}

pub fn snapshot() -> Snapshot {
    let Some(s) = shared() else { return Snapshot::default() };
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut channels = Vec::new();
    for i in 0..CHANNEL_SLOTS {
        let owner = s.slot_owner.get(i).map_or(0, |o| o.load(Ordering::Acquire));
        let counters = std::array::from_fn(|c| load(&s.channel[i][c]));
        let gauges = std::array::from_fn(|g| s.gauges[i][g].load(Ordering::Relaxed));
        let used = owner != 0 || i == CHANNEL_SLOTS - 1;
        if used && (owner != 0 || counters.iter().any(|&n| n > 0) || gauges.iter().any(|&n| n > 0)) {
            channels.push((if i == CHANNEL_SLOTS - 1 { 0 } else { owner }, counters, gauges));
        }
    }
    let histograms = std::array::from_fn(|h| {
        let mut cumulative = 0;
        let buckets = std::array::from_fn(|b| {
            cumulative += load(&s.buckets[h][b]);
            cumulative
        });
        (buckets, load(&s.counts[h]), load(&s.sums_micro[h]) as f64 / 1e6)
    });
    Snapshot {
        channels,
        global: std::array::from_fn(|c| load(&s.global[c])),
        histograms,
        gauges_measured: s.gauges_measured.load(Ordering::Acquire),
        // Not in shared memory: the reader fills them from wa_channel_events.
        unknown_fields: Vec::new(),
    }
}
