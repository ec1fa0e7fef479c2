//! The outbound path: messages queued by `wa_send_*()` (SQL, in the caller's transaction) are
//! sent by the delivery worker. Its rule: no transaction is open while a request is in flight;
//! a message is claimed (committed as `sending`), sent by the sender pool's threads (no
//! Postgres calls there), and its answer recorded in a transaction of its own.

pub mod delivery;
pub mod outages;
pub mod sender_pool;
