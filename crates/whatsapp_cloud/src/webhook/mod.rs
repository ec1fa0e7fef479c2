//! Webhooks Meta sends: the GET subscription handshake and the POST payload.
//!
//! Parsing is deliberately lenient: Meta adds fields and types every few months, and a non-200
//! answer makes it redeliver for 7 days. So only what routing and idempotency need is
//! required (a wamid per message or status); everything else is optional, the raw JSON of
//! every item is kept, and items that lack even a wamid are reported, not dropped silently.
//!
//! [`parse`] reads a POST body into a [`Payload`]; each kind of item a change carries
//! (messages, statuses, contacts, calls, groups, history, marketing preferences, structured
//! replies) has its own file, and what Meta says about the business (account, numbers,
//! templates, errors, unknown fields) is read by `business`.

mod bad_input;
mod business;
mod calls;
mod contacts;
mod groups;
mod handshake;
mod history;
mod messages;
mod parse;
mod payload;
mod preferences;
mod statuses;
mod structured_replies;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_business;

pub use bad_input::replace_nul;
pub use business::{
    BusinessEvent, BusinessKind, CONVERSATION_FIELDS, ChannelFacts, HIGH_THROUGHPUT, STANDARD_THROUGHPUT, TemplateState,
};
pub use calls::Call;
pub use contacts::{Contact, ContactSync, UserIdUpdate};
pub use groups::GroupEvent;
pub use handshake::{HandshakeError, MAX_CHALLENGE, constant_time_eq, verify_subscription};
pub use history::{HistoryChunk, HistoryMessage};
pub use messages::{Echo, Message};
pub use parse::parse;
pub use payload::{Change, ParseError, Payload, Rejected};
pub use preferences::{MarketingPreference, UserPreference};
pub use statuses::{Pricing, Status};
pub use structured_replies::StructuredReply;

use serde_json::Value;

/// A string at `path`; numbers are accepted too (ids are strings, but be liberal).
fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    let leaf = path.iter().try_fold(v, |v, k| v.get(k))?;
    match leaf {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer at `path`, as a string (`"1749416383"`, Meta's timestamps) or a number.
fn int_at(v: &Value, path: &[&str]) -> Option<i64> {
    str_at(v, path)?.parse().ok()
}

/// Unix seconds at `path` (Meta sends them as strings).
fn unix_at(v: &Value, path: &[&str]) -> Option<i64> {
    int_at(v, path)
}
