//! A fake Graph API: `POST /{version}/{phone_number_id}/messages`, answered like Meta does.

use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tiny_http::{Header, Response, Server};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
    /// The wamid answered, if the send was accepted.
    pub wamid: Option<String>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A scripted answer instead of the usual acceptance with a fresh wamid.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Meta's error JSON with this HTTP status and `error.code`.
    Error {
        http_status: u16,
        code: i64,
        message: String,
    },
    /// Close the connection without an answer.
    Drop,
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
            131056 => (
                400,
                "(#131056) (Business Account, Consumer Account) pair rate limit hit",
            ),
            190 => (401, "Error validating access token: Session has expired"),
            133010 => (400, "(#133010) Account not registered"),
            100 => (400, "(#100) Invalid parameter"),
            2 => (503, "(#2) Service temporarily unavailable"),
            _ => (400, "(#0) Simulated error"),
        };
        Fault::Error {
            http_status,
            code,
            message: message.to_string(),
        }
    }
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    arrived: Condvar,
    /// Scripted answers per recipient (`to`), used first-in first-out.
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    /// Bearer token each phone number id must present; unchecked when absent.
    tokens: Mutex<HashMap<String, String>>,
    next_id: AtomicU64,
}

/// A running fake Graph API on 127.0.0.1.
pub struct GraphSim {
    addr: SocketAddr,
    state: Arc<State>,
}

impl GraphSim {
    /// Starts on `127.0.0.1:port` (0: any free port).
    pub fn start(port: u16) -> std::io::Result<GraphSim> {
        let server = Server::http(("127.0.0.1", port)).map_err(std::io::Error::other)?;
        let addr = server
            .server_addr()
            .to_ip()
            .expect("bound to an IP address");
        let server = Arc::new(server);
        let state = Arc::new(State::default());
        for _ in 0..8 {
            let (server, state) = (server.clone(), state.clone());
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    handle(&state, request);
                }
            });
        }
        Ok(GraphSim { addr, state })
    }

    /// Base URL to put in `whatsapp_channel.graph_api_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requires `token` as the Bearer token for sends from `phone_number_id`.
    pub fn require_token(&self, phone_number_id: &str, token: &str) {
        self.state
            .tokens
            .lock()
            .unwrap()
            .insert(phone_number_id.to_string(), token.to_string());
    }

    /// The next send to `recipient` gets `fault` instead of a wamid (queued, first-in first-out).
    pub fn fail_next(&self, recipient: &str, fault: Fault) {
        self.state
            .faults
            .lock()
            .unwrap()
            .entry(recipient.to_string())
            .or_default()
            .push_back(fault);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until `count` received requests match `pred`; returns them (or what matched by the deadline).
    pub fn wait_for(
        &self,
        count: usize,
        timeout: Duration,
        pred: impl Fn(&Received) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut received = self.state.received.lock().unwrap();
        loop {
            let matching: Vec<Received> = received.iter().filter(|r| pred(r)).cloned().collect();
            let now = Instant::now();
            if matching.len() >= count || now >= deadline {
                return matching;
            }
            received = self
                .state
                .arrived
                .wait_timeout(received, deadline - now)
                .unwrap()
                .0;
        }
    }
}

fn handle(state: &State, mut request: tiny_http::Request) {
    let method = request.method().to_string();
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let authorization = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    let mut body = String::new();
    let _ = request.as_reader().take(8 << 20).read_to_string(&mut body);
    let (status, answer, wamid) = answer(state, &method, &path, authorization.as_deref(), &body);
    state.received.lock().unwrap().push(Received {
        method,
        path,
        authorization,
        body,
        wamid,
    });
    state.arrived.notify_all();
    match answer {
        None => drop(request), // Fault::Drop: close without answering
        Some(json) => {
            let header = Header::from_bytes("Content-Type", "application/json").unwrap();
            let _ = request.respond(
                Response::from_string(json.to_string())
                    .with_status_code(status)
                    .with_header(header),
            );
        }
    }
}

fn meta_error(http_status: u16, code: i64, message: &str) -> (u16, Option<Value>, Option<String>) {
    let error = json!({ "error": {
        "message": message, "type": "OAuthException", "code": code,
        "error_data": { "messaging_product": "whatsapp", "details": message },
        "fbtrace_id": "AwsSimTrace"
    }});
    (http_status, Some(error), None)
}

fn answer(
    state: &State,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> (u16, Option<Value>, Option<String>) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let [version, phone_number_id, "messages"] = parts.as_slice() else {
        return meta_error(400, 2500, "Unknown path components");
    };
    if method != "POST" {
        return meta_error(400, 100, "Unsupported method");
    }
    let valid_version = version
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(a, b)| {
            a.parse::<u32>().is_ok_and(|major| major >= 21) && b.parse::<u32>().is_ok()
        });
    if !valid_version {
        return meta_error(
            400,
            2635,
            &format!(
                "(#2635) You are calling a deprecated or unknown version of the Graph API ({version})"
            ),
        );
    }
    let expected = state.tokens.lock().unwrap().get(*phone_number_id).cloned();
    let presented = authorization.and_then(|a| a.strip_prefix("Bearer "));
    if presented.is_none() || expected.as_deref().is_some_and(|t| Some(t) != presented) {
        return meta_error(
            401,
            190,
            "Invalid OAuth access token - Cannot parse access token",
        );
    }
    let Ok(json) = serde_json::from_str::<Value>(body) else {
        return meta_error(400, 100, "(#100) The request body is not JSON");
    };
    if json["messaging_product"] != "whatsapp" {
        return meta_error(
            400,
            100,
            "(#100) The parameter messaging_product is required.",
        );
    }
    let to = json["to"]
        .as_str()
        .or(json["recipient"].as_str())
        .unwrap_or_default()
        .to_string();
    let kind = json["type"].as_str().unwrap_or_default();
    if to.is_empty() || kind.is_empty() || json.get(kind).is_none() {
        return meta_error(
            400,
            100,
            "(#100) Invalid parameter: to, type and the type's object are required",
        );
    }
    if let Some(fault) = state
        .faults
        .lock()
        .unwrap()
        .get_mut(&to)
        .and_then(VecDeque::pop_front)
    {
        return match fault {
            Fault::Error {
                http_status,
                code,
                message,
            } => meta_error(http_status, code, &message),
            Fault::Drop => (0, None, None),
            Fault::AcceptAs(wamid) => accepted(&to, wamid),
        };
    }
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    accepted(&to, format!("wamid.SIM{phone_number_id}x{n:010}"))
}

fn accepted(to: &str, wamid: String) -> (u16, Option<Value>, Option<String>) {
    let answer = json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": to, "wa_id": to.trim_start_matches('+') }],
        "messages": [{ "id": wamid }]
    });
    (200, Some(answer), Some(wamid))
}
