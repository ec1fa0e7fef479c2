//! What the workers need from Postgres itself, kept apart from what they do with it: typed
//! settings ([`guc`]); running SQL with bound parameters, prepared statements, strict column
//! reads and batches of rows ([`spi`]); whether the extension is installed at this version
//! ([`extension`]); a worker's own transaction that fails without ending it ([`transaction`]);
//! one unit of work per subtransaction ([`subtransaction`]); waking another process's worker at
//! COMMIT ([`commit_wake`]); a worker's main thread sleeping until its latch or one of its own
//! threads wakes it ([`thread_wake`]); saying what a worker does in pg_stat_activity
//! ([`activity`]); waiting while the server is a standby ([`role`]); one start-up for every
//! worker ([`worker`]); and raising an error for a SQL caller ([`error`]).

pub mod activity;
pub mod commit_wake;
pub mod error;
pub mod extension;
pub mod guc;
pub mod log;
pub mod role;
pub mod spi;
pub mod subtransaction;
pub mod thread_wake;
pub mod transaction;
pub mod worker;
