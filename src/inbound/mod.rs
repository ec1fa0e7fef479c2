//! The inbound path. [`http`]'s threads read, verify and parse requests and never call
//! Postgres; [`listener`], the worker's main thread, stores what they hand over through the one
//! write path ([`write_path`], whose SQL calls are in [`store`]) and answers after COMMIT.
//! [`replay`] stores stored POSTs again through the same path; [`route`] says which channel a
//! change is for; [`counts`] is what the listener counts; [`signature`] is the listener's
//! signature check as a SQL function.

pub mod counts;
pub mod handover;
pub mod http;
pub mod listener;
pub mod replay;
pub mod route;
pub mod signature;
pub mod store;
pub mod write_path;

pub use counts::{CounterKind, Counts};
