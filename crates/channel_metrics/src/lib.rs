//! The metrics of whatsapp_channel, as a model: what is counted (per channel, for the product
//! as a whole, histograms and gauges), a [`Snapshot`] of the values, and its rendering as
//! Prometheus text and as rows ([`exposition`]). Pure, so that `cargo test` checks it; the
//! extension keeps the values in shared memory and fills a snapshot from them.

pub mod exposition;

/// Channels with counters of their own; the last slot counts all further ones together.
pub const CHANNEL_SLOTS: usize = 256;

/// What is counted per channel. The names and labels are in [`exposition`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChannelCounter {
    PostStored,
    PostPartial,
    /// Items not stored for a database reason: answered 500, kept for a replay.
    PostIncomplete,
    PostInvalidPayload,
    PostSignatureMismatch,
    HandshakeVerified,
    HandshakeTokenMismatch,
    UnroutedChanges,
    SendSent,
    SendRetried,
    SendFailed,
    SendPaused,
    ErrorThrottle,
    ErrorTransient,
    ErrorPairLimit,
    ErrorFew,
    ErrorCredentials,
    ErrorPermanent,
    ErrorTransport,
}

pub const CHANNEL_COUNTERS: usize = ChannelCounter::ErrorTransport as usize + 1;

/// Counted for the product as a whole: requests refused before they name a channel, the rows
/// the listeners' transactions add (one stores POSTs of many channels at once), and media
/// downloads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GlobalCounter {
    UnknownChannel,
    Refused408,
    Refused413,
    Refused503,
    Refused400,
    Closed,
    /// Connections of a client address beyond its cap (answered 503).
    RefusedSourceConnections,
    /// Bodies of a client address beyond its budget (answered 503).
    RefusedSourceBytes,
    /// Connections from an address outside the allow-list (closed without an answer).
    RefusedSourceNotAllowed,
    MessagesStored,
    StatusesStored,
    MediaDownloaded,
    MediaSkipped,
    MediaFailed,
    MediaRetried,
    /// Webhook POSTs a listener worker handed to the first worker, answered by it.
    HandoverTaken,
    /// POSTs a listener worker stored itself instead (too big, busy, the first declined or away).
    HandoverKept,
    /// POSTs the first worker went away with before answering (answered 503, redelivered).
    HandoverLost,
}

pub const GLOBAL_COUNTERS: usize = GlobalCounter::HandoverLost as usize + 1;

/// Histograms, with their upper bounds (the `+Inf` bucket is the count).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Histogram {
    /// POSTs stored per listener transaction.
    BatchPosts,
    /// Seconds from the start of a listener transaction to its COMMIT.
    CommitSeconds,
    /// Seconds of one Graph API send, request to answer.
    SendSeconds,
}

pub const HISTOGRAMS: usize = 3;
pub const BUCKETS: usize = 12;

impl Histogram {
    pub const ALL: [Histogram; HISTOGRAMS] = [Histogram::BatchPosts, Histogram::CommitSeconds, Histogram::SendSeconds];

    pub fn bounds(self) -> [f64; BUCKETS] {
        match self {
            Histogram::BatchPosts => [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0],
            Histogram::CommitSeconds | Histogram::SendSeconds => {
                [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0]
            }
        }
    }
}

/// Per channel: the queue, and the webhook events still to replay, as the maintenance worker
/// last measured them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChannelGauge {
    QueueDepth,
    /// Age in milliseconds of the oldest queued message (0 when none).
    OldestQueuedMs,
    /// Webhook events with items not stored yet (outcome `incomplete`).
    IncompleteEvents,
}

pub const CHANNEL_GAUGES: usize = 3;

/// A copy of every counter, for rendering (see [`exposition`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    /// Per channel id (0 for the shared overflow slot): its counters and gauges.
    pub channels: Vec<(i64, [u64; CHANNEL_COUNTERS], [i64; CHANNEL_GAUGES])>,
    pub global: [u64; GLOBAL_COUNTERS],
    /// Per histogram: cumulative bucket counts, count, sum.
    pub histograms: [([u64; BUCKETS], u64, f64); HISTOGRAMS],
    pub gauges_measured: bool,
    /// Per channel and webhook field this version does not understand: how many changes came
    /// (counted in `wa_channel_events`, which the reader of the snapshot queries).
    pub unknown_fields: Vec<(i64, String, u64)>,
}
