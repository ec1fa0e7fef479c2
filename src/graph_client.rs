//! Sending claimed messages to the Graph API. Runs on short-lived threads that make no
//! Postgres calls; the worker's main thread claims before and records after, so no
//! transaction is open while a request is in flight.

use crate::store::Claimed;
use std::time::Duration;
use ureq::Agent;
use whatsapp_cloud::graph_api::{self, SendOutcome};

/// The answer to one send: what the Graph API said, or why it could not be asked.
pub enum SendResult {
    Answered(SendOutcome),
    /// Connection refused, reset, timed out, TLS: retried like a 5xx.
    Transport(String),
}

pub struct GraphClient {
    agent: Agent,
}

impl GraphClient {
    /// A client with a hard timeout per request; the agent pools keep-alive connections.
    pub fn new(timeout: Duration) -> Self {
        let config = Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_idle_connections_per_host(64)
            .build();
        GraphClient { agent: config.into() }
    }

    /// Sends every message concurrently and returns the results in the same order.
    pub fn send_all(&self, base_url: &str, messages: &[Claimed]) -> Vec<SendResult> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = messages.iter().map(|m| scope.spawn(move || self.send(base_url, m))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| SendResult::Transport("sender thread panicked".into())))
                .collect()
        })
    }

    fn send(&self, base_url: &str, m: &Claimed) -> SendResult {
        let url = graph_api::messages_url(base_url, &m.graph_api_version, &m.phone_number_id);
        let response = self
            .agent
            .post(&url)
            .header("Authorization", format!("Bearer {}", m.access_token))
            .content_type("application/json")
            .send(m.request.as_bytes());
        match response {
            Ok(mut r) => {
                let status = r.status().as_u16();
                match r.body_mut().with_config().limit(1 << 20).read_to_vec() {
                    Ok(body) => SendResult::Answered(graph_api::parse_send_response(status, &body)),
                    Err(e) => SendResult::Transport(format!("reading the answer: {e}")),
                }
            }
            // ureq's errors name the host and the failure, never the headers (no token).
            Err(e) => SendResult::Transport(e.to_string()),
        }
    }
}
