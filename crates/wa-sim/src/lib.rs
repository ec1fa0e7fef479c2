//! `wa-sim`: Meta's side of the wire, on this machine. The extension's tests, the README's
//! demo and the benchmarks all talk to this instead of Meta, which no CI can reach.
//!
//! - [`graph`]: a fake Graph API that accepts sends, checks them like Meta does, answers
//!   with Meta's JSON (wamids or error objects) and records what it received.
//! - [`payloads`]: webhook bodies shaped exactly like Meta's, ready to sign and POST.
//! - [`demo_media`]: the media those bodies send, which every fake Graph API serves.
//! - [`load`]: an inbound load generator: concurrent signed webhooks, POST -> NOTIFY latency.
//! - [`customers`]: whom the load's messages come from (a pool of stable customers, new ones)
//!   and what they send (a mix of kinds and statuses).
//! - [`outbound_bench`]: the outbound benchmark: delivery rate and COMMIT -> request latency.

pub mod customers;
pub mod demo_media;
pub mod graph;
pub mod load;
pub mod outbound_bench;
pub mod payloads;
