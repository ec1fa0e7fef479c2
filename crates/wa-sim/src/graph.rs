//! A fake Graph API: `POST /{version}/{phone_number_id}/messages`, answered like Meta does.

use bounded_http::{Limits, Request, Response};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
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

/// Status webhooks Meta would send after accepting a message, and when.
const STATUS_DELAYS: [(&str, Duration); 3] = [
    ("sent", Duration::from_millis(100)),
    ("delivered", Duration::from_millis(500)),
    ("read", Duration::from_millis(2000)),
];

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    arrived: Condvar,
    /// Scripted answers per recipient (`to`), used first-in first-out.
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    /// Bearer token each phone number id must present; unchecked when absent.
    tokens: Mutex<HashMap<String, String>>,
    next_id: AtomicU64,
    options: Options,
    /// Status webhooks due, posted by one thread in time order.
    callbacks: Mutex<Vec<(Instant, String, Value)>>,
    callback_due: Condvar,
}

/// A running fake Graph API on 127.0.0.1.
pub struct GraphSim {
    addr: SocketAddr,
    state: Arc<State>,
}

impl GraphSim {
    /// Starts on `127.0.0.1:port` (0: any free port), accepting every well-formed send.
    pub fn start(port: u16) -> std::io::Result<GraphSim> {
        GraphSim::start_with(port, Options::default())
    }

    /// Starts with `options` (latency, injected faults, status webhooks).
    pub fn start_with(port: u16, options: Options) -> std::io::Result<GraphSim> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let statuses = options.statuses.clone();
        let state = Arc::new(State { options, ..State::default() });
        if let Some(directory) = statuses {
            let state = state.clone();
            std::thread::spawn(move || post_statuses(&state, directory.as_ref()));
        }
        let limits = Limits { max_connections: 1024, ..Limits::default() };
        bounded_http::serve(listener, limits, Arc::new(SimHandler(state.clone())))?;
        Ok(GraphSim { addr, state })
    }

    /// Base URL to put in `whatsapp_channel.graph_api_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requires `token` as the Bearer token for sends from `phone_number_id`.
    pub fn require_token(&self, phone_number_id: &str, token: &str) {
        self.state.tokens.lock().unwrap().insert(phone_number_id.to_string(), token.to_string());
    }

    /// The next send to `recipient` gets `fault` instead of a wamid (queued, first-in first-out).
    pub fn fail_next(&self, recipient: &str, fault: Fault) {
        self.state.faults.lock().unwrap().entry(recipient.to_string()).or_default().push_back(fault);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until `count` received requests match `pred`; returns them (or what matched by the deadline).
    pub fn wait_for(&self, count: usize, timeout: Duration, pred: impl Fn(&Received) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut received = self.state.received.lock().unwrap();
        loop {
            let matching: Vec<Received> = received.iter().filter(|r| pred(r)).cloned().collect();
            let now = Instant::now();
            if matching.len() >= count || now >= deadline {
                return matching;
            }
            received = self.state.arrived.wait_timeout(received, deadline - now).unwrap().0;
        }
    }
}

struct SimHandler(Arc<State>);

impl bounded_http::Handler for SimHandler {
    fn handle(&self, request: Request) -> Response {
        handle(&self.0, request)
    }
}

fn handle(state: &State, request: Request) -> Response {
    let arrived = Instant::now();
    let method = request.method.clone();
    let path = request.path().to_string();
    let authorization = request.header("Authorization").map(str::to_string);
    let body = String::from_utf8_lossy(&request.body).into_owned();
    if !state.options.latency.is_zero() {
        std::thread::sleep(state.options.latency);
    }
    let (status, answer, wamid) = answer(state, &method, &path, authorization.as_deref(), &body);
    if let (Some(wamid), Some(_)) = (&wamid, &state.options.statuses) {
        let phone_number_id = path.trim_matches('/').split('/').nth(1).unwrap_or_default().to_string();
        let to = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|j| j["to"].as_str().map(|t| t.trim_start_matches('+').to_string()));
        schedule_statuses(state, &phone_number_id, wamid, &to.unwrap_or_default());
    }
    state.received.lock().unwrap().push(Received { method, path, authorization, body, wamid, at: arrived });
    state.arrived.notify_all();
    match answer {
        None => Response::close(), // Fault::Drop / Fault::Timeout: no answer
        Some(json) => Response::json(status, json.to_string()),
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
        .is_some_and(|(a, b)| a.parse::<u32>().is_ok_and(|major| major >= 21) && b.parse::<u32>().is_ok());
    if !valid_version {
        return meta_error(
            400,
            2635,
            &format!("(#2635) You are calling a deprecated or unknown version of the Graph API ({version})"),
        );
    }
    let expected = state.tokens.lock().unwrap().get(*phone_number_id).cloned();
    let presented = authorization.and_then(|a| a.strip_prefix("Bearer "));
    if presented.is_none() || expected.as_deref().is_some_and(|t| Some(t) != presented) {
        return meta_error(401, 190, "Invalid OAuth access token - Cannot parse access token");
    }
    let Ok(json) = serde_json::from_str::<Value>(body) else {
        return meta_error(400, 100, "(#100) The request body is not JSON");
    };
    if json["messaging_product"] != "whatsapp" {
        return meta_error(400, 100, "(#100) The parameter messaging_product is required.");
    }
    // A read receipt (optionally with a typing indicator) is answered {"success": true}.
    if json["status"] == "read" {
        return match json["message_id"].as_str() {
            Some(_) => (200, Some(json!({ "success": true })), None),
            None => meta_error(400, 100, "(#100) The parameter message_id is required."),
        };
    }
    let to = json["to"].as_str().or(json["recipient"].as_str()).unwrap_or_default().to_string();
    let kind = json["type"].as_str().unwrap_or_default();
    if to.is_empty() || kind.is_empty() || json.get(kind).is_none() {
        return meta_error(400, 100, "(#100) Invalid parameter: to, type and the type's object are required");
    }
    let scripted = state.faults.lock().unwrap().get_mut(&to).and_then(VecDeque::pop_front);
    let random = || {
        let roll = state.options.fault_share > 0.0 && chance(state) < state.options.fault_share;
        if roll { state.options.fault.clone() } else { None }
    };
    if let Some(fault) = scripted.or_else(random) {
        return match fault {
            Fault::Error { http_status, code, message } => meta_error(http_status, code, &message),
            Fault::Drop => (0, None, None),
            Fault::Timeout(d) => {
                std::thread::sleep(d);
                (0, None, None)
            }
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

/// A number in [0, 1) from a per-simulator xorshift sequence (no external randomness needed).
fn chance(state: &State) -> f64 {
    let mut x = state.next_id.fetch_add(0x9E37_79B9, Ordering::Relaxed) ^ 0x2545_F491_4F6C_DD1D;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn schedule_statuses(state: &State, phone_number_id: &str, wamid: &str, recipient: &str) {
    let now = Instant::now();
    let mut due = state.callbacks.lock().unwrap();
    for (status, delay) in STATUS_DELAYS {
        let timestamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let body = crate::payloads::status(phone_number_id, wamid, status, recipient, timestamp);
        due.push((now + delay, phone_number_id.to_string(), body));
    }
    state.callback_due.notify_all();
}

/// Posts due status webhooks, signed with the channel's app secret, as Meta does.
fn post_statuses(state: &State, directory: &dyn Directory) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut due = state.callbacks.lock().unwrap();
    loop {
        due.sort_by_key(|(at, ..)| std::cmp::Reverse(*at));
        let wait = match due.last() {
            None => Duration::from_secs(3600),
            Some((at, ..)) => at.saturating_duration_since(Instant::now()),
        };
        if !wait.is_zero() {
            due = state.callback_due.wait_timeout(due, wait).unwrap().0;
            continue;
        }
        let (_, phone_number_id, body) = due.pop().expect("checked above");
        drop(due);
        match directory.lookup(&phone_number_id) {
            Some(target) => {
                let bytes = body.to_string().into_bytes();
                let signature = whatsapp_cloud::signature::sign(target.app_secret.as_bytes(), &bytes);
                let result = agent
                    .post(&target.url)
                    .content_type("application/json")
                    .header(whatsapp_cloud::signature::HEADER, &signature)
                    .send(&bytes[..]);
                match result {
                    Ok(r) if r.status().as_u16() == 200 => {}
                    Ok(r) => eprintln!("wa-sim: status webhook to {} answered {}", target.url, r.status()),
                    Err(e) => eprintln!("wa-sim: status webhook to {} failed: {e}", target.url),
                }
            }
            None => eprintln!("wa-sim: no webhook known for phone_number_id {phone_number_id}; status not posted"),
        }
        due = state.callbacks.lock().unwrap();
    }
}
