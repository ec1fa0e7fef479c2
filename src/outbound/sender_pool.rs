//! Sending to the Graph API from a pool of threads that make no Postgres calls. The delivery
//! worker's main thread claims messages (and commits) before it hands them over, and records
//! the results (in a new transaction) after: no transaction is open while a request is in
//! flight, and sends are pipelined: a slow answer holds up only its own thread.

use super::actions::ActionRequest;
use crate::channels::Secret;
use crate::media::download::{Download, DownloadResult, download};
use crate::metrics;
use crate::pg::thread_wake::Waker;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use ureq::Agent;
use whatsapp_cloud::graph_api::{self, ActionOutcome, Method, SendOutcome};

/// One request to make.
pub struct Send {
    pub id: i64,
    pub url: String,
    pub access_token: Secret,
    pub body: String,
    /// Put the outbox id in the request's `biz_opaque_callback_data` (every message; not a
    /// read receipt, which is no message). Done on the sender's thread, off the main one.
    pub tag_with_id: bool,
}

pub enum Work {
    Send(Send),
    Download(Download),
    Action(ActionRequest),
}

pub enum Finished {
    Sent(i64, SendResult),
    Downloaded(i64, DownloadResult),
    Acted(i64, ActionResult),
}

/// The answer to one action (see [`crate::outbound::actions`]).
pub enum ActionResult {
    Answered(ActionOutcome),
    /// The request could not be made (found on the main thread): failed, not retried.
    Invalid(String),
    /// Connection refused, reset, timed out, TLS: retried like a 5xx.
    Transport(String),
}

/// The answer to one send: what the Graph API said, or why it could not be asked.
pub enum SendResult {
    Answered {
        outcome: SendOutcome,
        retry_after: Option<Duration>,
    },
    /// Connection refused, reset, timed out, TLS: retried like a 5xx.
    Transport(String),
}

pub struct SenderPool {
    sends: Sender<Work>,
    results: Receiver<Finished>,
    timeout_ms: Arc<AtomicU64>,
}

impl SenderPool {
    /// `threads` senders sharing one agent, which keeps connections alive between requests;
    /// each finished send wakes the main thread through `waker`.
    pub fn start(threads: usize, timeout: Duration, waker: Waker) -> SenderPool {
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(threads)
            .max_idle_connections_per_host(threads)
            .build();
        // Host names looked up once a minute, not once a send (see the cached_resolver crate).
        let agent = cached_resolver::agent(config);
        let (sends, queue) = channel::<Work>();
        let (results_tx, results) = channel();
        let queue = Arc::new(Mutex::new(queue));
        let timeout_ms = Arc::new(AtomicU64::new(timeout.as_millis() as u64));
        for i in 0..threads {
            let (agent, queue, results_tx, timeout_ms, waker) =
                (agent.clone(), queue.clone(), results_tx.clone(), timeout_ms.clone(), waker.clone());
            std::thread::Builder::new()
                .name(format!("wa-send-{i}"))
                .spawn(move || {
                    loop {
                        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(work) = next else { return }; // the worker is exiting
                        let timeout = Duration::from_millis(timeout_ms.load(Ordering::Relaxed));
                        let finished = match work {
                            Work::Send(send) => Finished::Sent(send.id, post(&agent, &send, timeout)),
                            Work::Download(d) => Finished::Downloaded(d.message_id, download(&agent, &d, timeout)),
                            Work::Action(a) => Finished::Acted(a.id, act(&agent, &a, timeout)),
                        };
                        if results_tx.send(finished).is_err() {
                            return;
                        }
                        waker.wake();
                    }
                })
                .expect("spawning a sender thread");
        }
        SenderPool { sends, results, timeout_ms }
    }

    pub fn set_timeout(&self, timeout: Duration) {
        self.timeout_ms.store(timeout.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn submit(&self, work: Work) {
        self.sends.send(work).expect("sender threads live as long as the pool");
    }

    /// The results that are ready, without waiting.
    pub fn finished(&self) -> Vec<Finished> {
        self.results.try_iter().collect()
    }
}

fn post(agent: &Agent, send: &Send, timeout: Duration) -> SendResult {
    let started = std::time::Instant::now();
    let result = post_once(agent, send, timeout);
    // Shared memory only: this thread may not call Postgres, and needs not.
    metrics::observe(metrics::Histogram::SendSeconds, started.elapsed().as_secs_f64());
    result
}

fn post_once(agent: &Agent, send: &Send, timeout: Duration) -> SendResult {
    let response = agent
        .post(&send.url)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .header("Authorization", format!("Bearer {}", send.access_token.expose()))
        .content_type("application/json");
    let response = if send.tag_with_id {
        response.send(graph_api::with_callback_data(&send.body, send.id).as_bytes())
    } else {
        response.send(send.body.as_bytes())
    };
    match response {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("Retry-After")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            match r.body_mut().with_config().limit(1 << 20).read_to_vec() {
                Ok(body) => {
                    SendResult::Answered { outcome: graph_api::parse_send_response(status, &body), retry_after }
                }
                Err(e) => SendResult::Transport(format!("reading the answer: {e}")),
            }
        }
        // ureq's errors name the host and the failure, never the headers (no token).
        Err(e) => SendResult::Transport(e.to_string()),
    }
}

/// Performs one action: its method, URL and body, read as its kind's answer is read.
fn act(agent: &Agent, action: &ActionRequest, timeout: Duration) -> ActionResult {
    let bearer = format!("Bearer {}", action.access_token.expose());
    let response = match (action.method, &action.body) {
        (Method::Get, _) => {
            agent.get(&action.url).config().timeout_global(Some(timeout)).build().header("Authorization", bearer).call()
        }
        (Method::Post, body) => agent
            .post(&action.url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Authorization", bearer)
            .content_type("application/json")
            .send(body.as_deref().unwrap_or("{}").as_bytes()),
        (Method::Delete, Some(body)) => agent
            .delete(&action.url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Authorization", bearer)
            .force_send_body()
            .content_type("application/json")
            .send(body.as_bytes()),
        (Method::Delete, None) => agent
            .delete(&action.url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Authorization", bearer)
            .call(),
    };
    match response {
        Ok(mut r) => {
            let status = r.status().as_u16();
            match r.body_mut().with_config().limit(1 << 20).read_to_vec() {
                Ok(body) => ActionResult::Answered(graph_api::parse_action_response(action.kind, status, &body)),
                Err(e) => ActionResult::Transport(format!("reading the answer: {e}")),
            }
        }
        // ureq's errors name the host and the failure, never the headers (no token).
        Err(e) => ActionResult::Transport(e.to_string()),
    }
}
