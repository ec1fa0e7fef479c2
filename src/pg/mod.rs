//! What the workers need from Postgres itself, kept apart from what they do with it: typed
//! settings ([`guc`]), a worker's own transaction that
//! fails without ending it ([`transaction`]), one unit of work per subtransaction
//! ([`subtransaction`]), waking another
//! process's worker at COMMIT ([`commit_wake`]), a worker's main thread sleeping until its
//! latch or one of its own threads wakes it ([`thread_wake`]), saying
//! what a worker does in pg_stat_activity ([`activity`]), and waiting while the server is a
//! standby ([`role`]).

pub mod activity;
pub mod commit_wake;
pub mod guc;
pub mod role;
pub mod subtransaction;
pub mod thread_wake;
pub mod transaction;
