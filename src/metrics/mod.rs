//! Metrics: counters in shared memory that every worker adds to ([`counters`]), served in
//! Prometheus' text format on `GET /metrics` at `whatsapp_channel.metrics_address` by the
//! maintenance worker ([`server`]), and the same samples as rows in the `wa_metrics` view
//! ([`sql`]). What is counted and how it is rendered is the pure crate `channel_metrics`.

pub mod counters;
pub mod server;
pub mod sql;

pub use channel_metrics::{ChannelCounter, GlobalCounter, Histogram};
pub use counters::{add, add_global, add_global_n, observe};
