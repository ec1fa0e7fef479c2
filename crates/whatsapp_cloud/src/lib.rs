//! A pure model of Meta's WhatsApp Cloud API, as far as a WhatsApp channel needs it.
//!
//! Nothing here touches Postgres or the network, so all of it is unit-tested with plain
//! `cargo test -p whatsapp_cloud`. The extension (`whatsapp_channel`), the simulator (`wa-sim`)
//! and the end-to-end tests all use these functions, so both sides of the wire agree by
//! construction on signatures, payload shapes and error codes.

pub mod channel;
pub mod graph_api;
pub mod pacing;
pub mod phone;
pub mod salvage;
pub mod signature;
pub mod webhook;
