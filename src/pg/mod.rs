//! What the workers need from Postgres itself, kept apart from what they do with it: typed
//! settings ([`guc`]), one unit of work per subtransaction ([`subtransaction`]), waking a worker
//! at COMMIT ([`wake`]), sleeping on the latch and a socket together ([`wakeup`]), and saying
//! what a worker does in pg_stat_activity ([`activity`]).

pub mod activity;
pub mod guc;
pub mod subtransaction;
pub mod wake;
pub mod wakeup;
