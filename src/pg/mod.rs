//! What the workers need from Postgres itself, kept apart from what they do with it: typed
//! settings ([`guc`]), one unit of work per subtransaction ([`subtransaction`]), waking a worker
//! at COMMIT ([`wake`]), sleeping on the latch and a socket together ([`wakeup`]), saying
//! what a worker does in pg_stat_activity ([`activity`]), and waiting while the server is a
//! standby ([`role`]).

pub mod activity;
pub mod guc;
pub mod role;
pub mod subtransaction;
pub mod wake;
pub mod wakeup;
