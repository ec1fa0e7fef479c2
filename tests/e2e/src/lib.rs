//! The end-to-end test harness. One PostgreSQL cluster per test binary, started on first use
//! from the installed extension (`cargo pgrx install`), with `whatsapp_channel` preloaded, the
//! webhook listener on a free loopback port and the Graph API URL pointing at a
//! [`GraphSim`](wa_sim::graph::GraphSim). Tests share the cluster but never a channel, so they
//! run in parallel. The cluster is stopped and deleted when the test process exits (a watchdog
//! child waits for our pipe to close).
//!
//! The harness by concern: the cluster and how it is made (`cluster.rs`), the running server's
//! lifecycle and files (`server.rs`), the PostgreSQL programs it runs (`programs.rs`),
//! connections and SQL helpers (`sql.rs`), channels (`channels.rs`), HTTP (`http.rs`),
//! polling (`poll.rs`) and what the inbound tests share (`inbound.rs`).

mod channels;
mod cluster;
mod http;
mod inbound;
mod poll;
mod programs;
mod server;
mod sql;

pub use channels::Channel;
pub use cluster::{Cluster, cluster};
pub use http::{Answer, http_get, http_post, try_http_get, try_http_post};
pub use inbound::{messages_of, one_message, value_with};
pub use poll::{DEADLINE, poll, poll_within};
pub use programs::{bindir, free_port, is_root, run};
pub use sql::{Listener, NOTIFICATION_KEYS, counts_written, error_of, notification_problem, table_digests, unsent};

pub use wa_sim;
pub use whatsapp_cloud;
