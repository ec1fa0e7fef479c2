//! A fake Graph API: `POST /{version}/{phone_number_id}/messages` (one-to-one and group sends)
//! and `/marketing_messages` (Meta's Marketing Messages API), answered like Meta does; and the
//! calls that are not messages (block users, call actions, template creation and deletion, and
//! the Groups API's management: create a group, its invite link, join requests, participants).
//!
//! This file holds what a test scripts the simulator with and reads back from it; the server is
//! in `server.rs`, each family of endpoints in a file of its own.

mod actions;
mod media;
mod sends;
mod server;
mod state;
mod statuses;
#[cfg(test)]
mod tests;

pub use media::sha256_base64;
pub use server::GraphSim;

use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// E.g. `/v23.0/123/messages` or `/v23.0/123/marketing_messages`: which endpoint was used.
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
    /// The wamid answered, if the send was accepted.
    pub wamid: Option<String>,
    /// When the request arrived.
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The last segment of the path: `messages`, `marketing_messages`, `media`, ...
    pub fn endpoint(&self) -> &str {
        let path = self.path.split_once('?').map_or(self.path.as_str(), |(p, _)| p);
        path.trim_end_matches('/').rsplit('/').next().unwrap_or_default()
    }
}

/// A scripted answer instead of the usual acceptance with a fresh wamid.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Meta's error JSON with this HTTP status and `error.code`.
    Error { http_status: u16, code: i64, message: String },
    /// Close the connection without an answer.
    Drop,
    /// Hold the request this long, then close without an answer (a client's timeout should fire first).
    Timeout(Duration),
    /// Accept, answering this wamid (to script a status that arrives before the send is recorded).
    AcceptAs(String),
}

impl Fault {
    /// The error Meta answers for a code, with its real message text.
    pub fn meta(code: i64) -> Fault {
        let (http_status, message) = match code {
            131030 => (400, "(#131030) Recipient phone number not in allowed list"),
            131047 => (400, "(#131047) Re-engagement message"),
            130429 => (400, "(#130429) Rate limit hit"),
            131056 => (400, "(#131056) (Business Account, Consumer Account) pair rate limit hit"),
            190 => (401, "Error validating access token: Session has expired"),
            133010 => (400, "(#133010) Account not registered"),
            100 => (400, "(#100) Invalid parameter"),
            2 => (503, "(#2) Service temporarily unavailable"),
            131048 => (400, "(#131048) Spam rate limit hit"),
            131049 => (400, "(#131049) This message was not delivered to maintain healthy ecosystem engagement."),
            131053 => (400, "(#131053) Media upload error"),
            133016 => (400, "(#133016) Account register deregister rate limit exceeded"),
            _ => (400, "(#0) Simulated error"),
        };
        Fault::Error { http_status, code, message: message.to_string() }
    }
}

/// How the simulator behaves beyond accepting sends.
#[derive(Clone, Default)]
pub struct Options {
    /// Every answer waits this long (for benchmarks: Meta answers in tens of milliseconds).
    pub latency: Duration,
    /// Share of sends, 0.0 to 1.0, that get `fault` instead of a wamid.
    pub fault_share: f64,
    pub fault: Option<Fault>,
    /// Where status webhooks for accepted sends are posted; `None`: no statuses.
    pub statuses: Option<Arc<dyn Directory>>,
}

/// Finds where a business number's webhooks go, and the app secret they are signed with.
pub trait Directory: Send + Sync {
    fn lookup(&self, phone_number_id: &str) -> Option<WebhookTarget>;
}

#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub url: String,
    pub app_secret: String,
}
