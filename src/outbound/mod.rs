//! The outbound path: messages queued by `wa_send_*()` (SQL, sql/outbound.sql, in the caller's
//! transaction; their Graph API bodies built by [`requests`]) are sent by the [`delivery`]
//! worker. Its rule: no transaction is open while a request is in flight; a message is claimed
//! (committed as `sending`, through [`store`]), sent by the [`sender_pool`]'s threads (no
//! Postgres calls there), and its answer recorded in a transaction of its own ([`recording`]).
//! A channel the Graph API does not answer waits and probes ([`outages`]). Graph API calls that
//! are not messages (block, call actions, templates) go through an outbox of their own, on the
//! same worker and by the same rules ([`actions`]).

pub mod actions;
pub mod delivery;
pub mod outages;
pub mod recording;
pub mod requests;
pub mod sender_pool;
pub mod store;
