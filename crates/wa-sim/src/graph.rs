//! A fake Graph API: `POST /{version}/{phone_number_id}/messages` (one-to-one and group sends)
//! and `/marketing_messages` (Meta's Marketing Messages API), answered like Meta does.

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
        self.path.trim_end_matches('/').rsplit('/').next().unwrap_or_default()
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

/// Times a status webhook is posted again after it was not answered 200 (a quarter of a
/// second, doubling up to 4 s: about five minutes in all).
const STATUS_RETRIES: u32 = 80;

/// Status webhooks Meta would send after accepting a message, and when.
const STATUS_DELAYS: [(&str, Duration); 3] = [
    ("sent", Duration::from_millis(100)),
    ("delivered", Duration::from_millis(500)),
    ("read", Duration::from_millis(2000)),
];

/// Who is in a group whose participants no test set: two customers, so that the per-participant
/// statuses of a group send are visibly more than one.
const DEFAULT_GROUP_PARTICIPANTS: [&str; 2] = ["15550001001", "15550001002"];

/// Message types a group send may have; Meta refuses the others (interactive, location, ...).
const GROUP_TYPES: &[&str] = &["text", "image", "video", "audio", "document", "sticker", "template"];

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    arrived: Condvar,
    /// Scripted answers per recipient (`to`), used first-in first-out.
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    /// Bearer token each phone number id must present; unchecked when absent.
    tokens: Mutex<HashMap<String, String>>,
    next_id: AtomicU64,
    /// Unique to this run of the simulator, in every wamid it answers: Meta never gives out a
    /// wamid twice, and a simulator restarted against the same database must not either.
    run_id: String,
    options: Options,
    /// Status webhooks due, posted by one thread in time order: when, to which number, the
    /// body, and how many times posting it failed so far.
    callbacks: Mutex<Vec<(Instant, String, Value, u32)>>,
    /// Status webhooks the listener answered 200: (wamid, status).
    statuses_posted: Mutex<Vec<(String, String)>>,
    /// While set, every send is dropped without an answer, as when Meta or the network is down.
    unreachable: std::sync::atomic::AtomicBool,
    callback_due: Condvar,
    /// Media by id: uploaded, or added by a test to stand for a customer's photo.
    media: Mutex<HashMap<String, Media>>,
    /// Message templates per WhatsApp Business Account id.
    templates: Mutex<HashMap<String, Value>>,
    /// Our own base URL, for the download URLs we hand out.
    base_url: Mutex<String>,
    /// Media whose next download answers 404, as an expired URL does.
    expire_next: Mutex<std::collections::HashSet<String>>,
    /// Participants per group id, whose delivered/read statuses a group send gets.
    group_participants: Mutex<HashMap<String, Vec<String>>>,
}

#[derive(Clone)]
struct Media {
    mime_type: String,
    bytes: Vec<u8>,
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
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let run_id = format!("{:x}{:x}", started.as_nanos(), std::process::id());
        let state = Arc::new(State { options, run_id, ..State::default() });
        // What the simulated customers send (payloads' media ids) can be downloaded, as Meta's can.
        state.media.lock().unwrap().extend(
            crate::demo_media::all()
                .into_iter()
                .map(|(id, mime, bytes)| (id.to_string(), Media { mime_type: mime.to_string(), bytes })),
        );
        *state.base_url.lock().unwrap() = format!("http://{addr}");
        if let Some(directory) = statuses {
            let state = state.clone();
            std::thread::spawn(move || post_statuses(&state, directory.as_ref()));
        }
        // Meta keeps idle connections open for a while: the delivery worker's pooled ones
        // (ureq drops them after 15 s idle) must not be closed under it.
        let limits = Limits { max_connections: 4096, head_timeout: Duration::from_secs(60), ..Limits::default() };
        bounded_http::serve(listener, limits, bounded_http::Tls::plain(), Arc::new(SimHandler(state.clone())))?;
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

    /// Stores media as if a customer had sent it (or it had been uploaded): `GET /{version}/{id}`
    /// then describes it with a download URL, which serves the bytes to a Bearer token. Returns its id.
    pub fn add_media(&self, mime_type: &str, bytes: Vec<u8>) -> String {
        let id = format!("{}", 1_000_000_000_000_000u64 + self.state.next_id.fetch_add(1, Ordering::Relaxed));
        self.state.media.lock().unwrap().insert(id.clone(), Media { mime_type: mime_type.to_string(), bytes });
        id
    }

    /// The next download of this media answers 404, as Meta's URLs do after 5 minutes.
    pub fn expire_next_download(&self, media_id: &str) {
        self.state.expire_next.lock().unwrap().insert(media_id.to_string());
    }

    /// The media's bytes, e.g. to check what a client uploaded.
    pub fn media_bytes(&self, media_id: &str) -> Option<Vec<u8>> {
        self.state.media.lock().unwrap().get(media_id).map(|m| m.bytes.clone())
    }

    /// The templates `GET /{version}/{waba_id}/message_templates` lists (Meta's `data` array).
    pub fn set_templates(&self, waba_id: &str, templates: Value) {
        self.state.templates.lock().unwrap().insert(waba_id.to_string(), templates);
    }

    /// Who is in `group_id`: a group send's `delivered` and `read` webhooks carry one status per
    /// participant. Unset groups have two ([`DEFAULT_GROUP_PARTICIPANTS`]).
    pub fn set_group_participants(&self, group_id: &str, wa_ids: &[&str]) {
        let wa_ids = wa_ids.iter().map(|w| w.to_string()).collect();
        self.state.group_participants.lock().unwrap().insert(group_id.to_string(), wa_ids);
    }

    /// From now on every send gets no answer (the connection closes), until this is called
    /// with `false`: an outage of Meta or of the network.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.state.unreachable.store(unreachable, Ordering::Relaxed);
    }

    /// The status webhooks posted so far that the listener answered 200, as (wamid, status).
    pub fn statuses_posted(&self) -> Vec<(String, String)> {
        self.state.statuses_posted.lock().unwrap().clone()
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until `count` received requests match `pred`; returns them (or what matched by the deadline).
    pub fn wait_for(&self, count: usize, timeout: Duration, pred: impl Fn(&Received) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut received = self.state.received.lock().unwrap();
        // Only what arrived since the last look is examined: a benchmark waits here for tens of
        // thousands of requests, and re-reading them all at every arrival made the simulator,
        // not the delivery worker, the bottleneck.
        let (mut examined, mut matched) = (0, 0);
        loop {
            matched += received[examined..].iter().filter(|r| pred(r)).count();
            examined = received.len();
            let now = Instant::now();
            if matched >= count || now >= deadline {
                return received.iter().filter(|r| pred(r)).cloned().collect();
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
    if let Some(response) = media_and_templates(state, &request, authorization.as_deref()) {
        state.received.lock().unwrap().push(Received { method, path, authorization, body, wamid: None, at: arrived });
        state.arrived.notify_all();
        return response;
    }
    let (status, answer, wamid) = answer(state, &method, &path, authorization.as_deref(), &body);
    if let (Some(wamid), Some(_)) = (&wamid, &state.options.statuses) {
        let phone_number_id = path.trim_matches('/').split('/').nth(1).unwrap_or_default().to_string();
        let json = serde_json::from_str::<Value>(&body).unwrap_or(Value::Null);
        let to = json["to"].as_str().unwrap_or_default();
        // Meta echoes the sender's tracking string on every status of the message.
        let callback = json.get("biz_opaque_callback_data").cloned();
        let echo = |mut envelope: Value| {
            if let (Some(callback), Some(statuses)) =
                (&callback, envelope["entry"][0]["changes"][0]["value"]["statuses"].as_array_mut())
            {
                statuses.iter_mut().for_each(|s| s["biz_opaque_callback_data"] = callback.clone());
            }
            envelope
        };
        if is_group_send(&json) {
            // A group id is taken as sent: it is base64-like, and no character of it is noise.
            let participants = state
                .group_participants
                .lock()
                .unwrap()
                .get(to)
                .cloned()
                .unwrap_or_else(|| DEFAULT_GROUP_PARTICIPANTS.iter().map(|p| p.to_string()).collect());
            let participants: Vec<&str> = participants.iter().map(String::as_str).collect();
            schedule_statuses(state, &phone_number_id, |status, timestamp| {
                let value = crate::payloads::group_status_value(status, wamid, to, &participants, timestamp);
                echo(crate::payloads::envelope(&phone_number_id, value))
            });
        } else {
            let recipient = to.trim_start_matches('+');
            schedule_statuses(state, &phone_number_id, |status, timestamp| {
                echo(crate::payloads::status(&phone_number_id, wamid, status, recipient, timestamp))
            });
        }
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
    if state.unreachable.load(Ordering::Relaxed) {
        return (0, None, None); // the connection closes: no answer
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let [version, phone_number_id, endpoint @ ("messages" | "marketing_messages")] = parts.as_slice() else {
        return meta_error(400, 2500, "Unknown path components");
    };
    let marketing = *endpoint == "marketing_messages";
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
    // The Marketing Messages API sends marketing templates and nothing else (no read receipts).
    if marketing && json["type"] != "template" {
        return meta_error(400, 100, "(#100) Marketing messages must be templates");
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
    let group = is_group_send(&json);
    if group && !GROUP_TYPES.contains(&kind) {
        return meta_error(
            400,
            131009,
            "(#131009) Parameter value is not valid: this message type is not supported in groups",
        );
    }
    let shape = if group {
        Shape::Group
    } else if marketing {
        Shape::Marketing
    } else {
        Shape::Direct
    };
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
            Fault::AcceptAs(wamid) => accepted(&to, wamid, shape),
        };
    }
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    accepted(&to, format!("wamid.SIM{phone_number_id}x{}x{n:010}", state.run_id), shape)
}

/// A send to a group (`recipient_type: group`, `to` its id) rather than to one customer.
fn is_group_send(json: &Value) -> bool {
    json["recipient_type"] == "group"
}

/// How Meta's acceptance of a send looks, which depends on what was sent.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// To one customer on `/messages`: `contacts[].wa_id` is `to` without its '+'.
    Direct,
    /// On `/marketing_messages`: the message also says it was `accepted`.
    Marketing,
    /// To a group: the group id stands as the contact, and the message names its group.
    Group,
}

fn accepted(to: &str, wamid: String, shape: Shape) -> (u16, Option<Value>, Option<String>) {
    let (wa_id, message) = match shape {
        Shape::Direct => (to.trim_start_matches('+'), json!({ "id": wamid })),
        Shape::Marketing => (to.trim_start_matches('+'), json!({ "id": wamid, "message_status": "accepted" })),
        Shape::Group => (to, json!({ "id": wamid, "group_id": to })),
    };
    let answer = json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": to, "wa_id": wa_id }],
        "messages": [message]
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

/// Queues the webhooks of [`STATUS_DELAYS`], each built by `body(status, timestamp)`.
fn schedule_statuses(state: &State, phone_number_id: &str, body: impl Fn(&str, i64) -> Value) {
    let now = Instant::now();
    let mut due = state.callbacks.lock().unwrap();
    for (status, delay) in STATUS_DELAYS {
        let timestamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        due.push((now + delay, phone_number_id.to_string(), body(status, timestamp), 0));
    }
    state.callback_due.notify_all();
}

/// Posts due status webhooks, signed with the channel's app secret, as Meta does.
fn post_statuses(state: &State, directory: &dyn Directory) {
    // (Without the cache, ureq would start a thread to resolve the listener's host for every callback.)
    let agent = cached_resolver::agent(
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(10))).build(),
    );
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
        let (_, phone_number_id, body, failures) = due.pop().expect("checked above");
        drop(due);
        let mut again = None;
        match directory.lookup(&phone_number_id) {
            Some(target) => {
                let bytes = body.to_string().into_bytes();
                let signature = whatsapp_cloud::signature::sign(target.app_secret.as_bytes(), &bytes);
                let result = agent
                    .post(&target.url)
                    .content_type("application/json")
                    .header(whatsapp_cloud::signature::HEADER, &signature)
                    .send(&bytes[..]);
                let failure = match result {
                    Ok(r) if r.status().as_u16() == 200 => None,
                    Ok(r) => Some(format!("answered {}", r.status())),
                    Err(e) => Some(format!("failed: {e}")),
                };
                match failure {
                    None => {
                        let status = &body["entry"][0]["changes"][0]["value"]["statuses"][0];
                        let key = |k: &str| status[k].as_str().unwrap_or_default().to_string();
                        state.statuses_posted.lock().unwrap().push((key("id"), key("status")));
                    }
                    // Meta retries a webhook that was not answered 200, for days; this, for
                    // about five minutes.
                    Some(why) if failures < STATUS_RETRIES => {
                        eprintln!("wa-sim: status webhook to {} {why}; retrying", target.url);
                        let delay = Duration::from_millis(250 << failures.min(4));
                        again = Some((Instant::now() + delay, phone_number_id, body, failures + 1));
                    }
                    Some(why) => eprintln!("wa-sim: status webhook to {} {why}; giving up", target.url),
                }
            }
            None => eprintln!("wa-sim: no webhook known for phone_number_id {phone_number_id}; status not posted"),
        }
        due = state.callbacks.lock().unwrap();
        due.extend(again);
    }
}

fn json_response((status, body, _): (u16, Option<Value>, Option<String>)) -> Response {
    Response::json(status, body.unwrap_or(Value::Null).to_string())
}

/// Media metadata, downloads and uploads, and the template list: `None` for any other request.
fn media_and_templates(state: &State, request: &Request, authorization: Option<&str>) -> Option<Response> {
    let parts: Vec<&str> = request.path().trim_matches('/').split('/').collect();
    let authorized = authorization.is_some_and(|a| a.starts_with("Bearer ") && a.len() > 7);
    let unauthorized = || json_response(meta_error(401, 190, "Invalid OAuth access token - Cannot parse access token"));
    match (request.method.as_str(), parts.as_slice()) {
        // The short-lived download URL handed out below; Meta requires the Bearer token on it too.
        ("GET", ["download", id]) => {
            if !authorized {
                return Some(unauthorized());
            }
            if state.expire_next.lock().unwrap().remove(*id) {
                return Some(Response::text(404, "URL signature expired"));
            }
            let media = state.media.lock().unwrap().get(*id).cloned();
            Some(match media {
                Some(m) => Response::bytes(200, &m.mime_type, m.bytes),
                None => Response::text(404, "Not Found"),
            })
        }
        ("GET", [version, id]) if version.starts_with('v') && id.bytes().all(|b| b.is_ascii_digit()) => {
            if !authorized {
                return Some(unauthorized());
            }
            let media = state.media.lock().unwrap().get(*id).cloned();
            Some(match media {
                Some(m) => {
                    use std::fmt::Write;
                    let digest = sha256_base64(&m.bytes);
                    let mut url = state.base_url.lock().unwrap().clone();
                    let _ = write!(url, "/download/{id}");
                    Response::json(
                        200,
                        json!({ "messaging_product": "whatsapp", "url": url, "mime_type": m.mime_type,
                                "sha256": digest, "file_size": m.bytes.len(), "id": id })
                        .to_string(),
                    )
                }
                None => json_response(meta_error(
                    400,
                    100,
                    &format!("(#100) Unsupported get request. Object with ID '{id}' does not exist"),
                )),
            })
        }
        ("GET", [_version, waba_id, "message_templates"]) => {
            if !authorized {
                return Some(unauthorized());
            }
            let list = state.templates.lock().unwrap().get(*waba_id).cloned().unwrap_or_else(|| json!([]));
            Some(Response::json(200, json!({ "data": list, "paging": {} }).to_string()))
        }
        ("POST", [_version, _phone_number_id, "media"]) => {
            if !authorized {
                return Some(unauthorized());
            }
            let content_type = request.header("Content-Type").unwrap_or_default();
            Some(match multipart_file(content_type, &request.body) {
                Some((mime_type, bytes)) => {
                    let id = format!("{}", 2_000_000_000_000_000u64 + state.next_id.fetch_add(1, Ordering::Relaxed));
                    state.media.lock().unwrap().insert(id.clone(), Media { mime_type, bytes });
                    Response::json(200, json!({ "id": id }).to_string())
                }
                None => json_response(meta_error(400, 100, "(#100) The parameter file is required.")),
            })
        }
        _ => None,
    }
}

/// The `file` part of a multipart/form-data body: its Content-Type and bytes.
fn multipart_file(content_type: &str, body: &[u8]) -> Option<(String, Vec<u8>)> {
    let boundary = content_type.split(';').find_map(|p| p.trim().strip_prefix("boundary="))?.trim_matches('"');
    let delimiter = format!("--{boundary}").into_bytes();
    let mut rest = body;
    while let Some(start) = find(rest, &delimiter) {
        rest = &rest[start + delimiter.len()..];
        let part_end = find(rest, &delimiter).unwrap_or(rest.len());
        let part = &rest[..part_end];
        let head_end = find(part, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&part[..head_end]).to_ascii_lowercase();
        if head.contains("name=\"file\"") {
            let mime = head
                .lines()
                .find_map(|l| l.strip_prefix("content-type:"))
                .unwrap_or("application/octet-stream")
                .trim()
                .to_string();
            let data = &part[head_end + 4..];
            let data = data.strip_suffix(b"\r\n").unwrap_or(data);
            return Some((mime, data.to_vec()));
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Meta describes media by the base64 SHA-256 of its bytes.
pub fn sha256_base64(bytes: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str, token: Option<&str>) -> (u16, Vec<u8>) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut req = agent.get(url);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut r = req.call().unwrap();
        (r.status().as_u16(), r.body_mut().read_to_vec().unwrap())
    }

    #[test]
    fn serves_media_like_meta_and_takes_uploads() {
        let sim = GraphSim::start(0).unwrap();
        let id = sim.add_media("image/jpeg", b"\xff\xd8jpeg bytes".to_vec());
        let (status, body) = get(&format!("{}/v25.0/{id}", sim.url()), Some("t"));
        assert_eq!(status, 200);
        let info: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((info["mime_type"].as_str(), info["file_size"].as_u64()), (Some("image/jpeg"), Some(12)));
        assert_eq!(info["sha256"], sha256_base64(b"\xff\xd8jpeg bytes"));
        let url = info["url"].as_str().unwrap();
        assert_eq!(get(url, None).0, 401, "the download needs the token");
        assert_eq!(get(url, Some("t")), (200, b"\xff\xd8jpeg bytes".to_vec()));
        assert_eq!(get(&format!("{}/v25.0/999", sim.url()), Some("t")).0, 400);

        let body = b"--XX\r\nContent-Disposition: form-data; name=\"messaging_product\"\r\n\r\nwhatsapp\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\nPNGDATA\r\n--XX--\r\n";
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut r = agent
            .post(&format!("{}/v25.0/123/media", sim.url()))
            .header("Authorization", "Bearer t")
            .content_type("multipart/form-data; boundary=XX")
            .send(&body[..])
            .unwrap();
        let uploaded: Value = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
        let new_id = uploaded["id"].as_str().unwrap();
        let (_, info) = get(&format!("{}/v25.0/{new_id}", sim.url()), Some("t"));
        let info: Value = serde_json::from_slice(&info).unwrap();
        assert_eq!(get(info["url"].as_str().unwrap(), Some("t")), (200, b"PNGDATA".to_vec()));
    }

    #[test]
    fn lists_templates_per_business_account() {
        let sim = GraphSim::start(0).unwrap();
        sim.set_templates("555", json!([{ "name": "hello_world", "language": "en_US", "status": "APPROVED", "category": "UTILITY", "components": [] }]));
        let (status, body) = get(&format!("{}/v25.0/555/message_templates", sim.url()), Some("t"));
        let list: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, list["data"][0]["name"].as_str()), (200, Some("hello_world")));
    }

    fn post(sim: &GraphSim, endpoint: &str, body: Value) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut r = agent
            .post(&format!("{}/v23.0/123/{endpoint}", sim.url()))
            .header("Authorization", "Bearer t")
            .content_type("application/json")
            .send(body.to_string().as_bytes())
            .unwrap();
        (r.status().as_u16(), serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap())
    }

    fn template() -> Value {
        json!({ "name": "spring_sale", "language": { "code": "en_US" } })
    }

    const GROUP: &str = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD";

    #[test]
    fn a_restarted_simulator_never_answers_a_wamid_twice() {
        let send =
            json!({ "messaging_product": "whatsapp", "to": "16505551234", "type": "text", "text": { "body": "hi" } });
        let first = post(&GraphSim::start(0).unwrap(), "messages", send.clone()).1;
        let again = post(&GraphSim::start(0).unwrap(), "messages", send).1;
        let wamid = |a: &Value| a["messages"][0]["id"].as_str().unwrap().to_string();
        assert_ne!(wamid(&first), wamid(&again), "the first send of each run");
    }

    #[test]
    fn marketing_messages_take_templates_only() {
        let sim = GraphSim::start(0).unwrap();
        let send = json!({ "messaging_product": "whatsapp", "to": "+16505551234", "type": "template", "template": template() });
        let (status, answer) = post(&sim, "marketing_messages", send);
        assert_eq!(status, 200);
        let wamid = answer["messages"][0]["id"].as_str().unwrap().to_string();
        assert_eq!(answer["messages"][0]["message_status"], "accepted");
        assert_eq!(answer["contacts"][0], json!({ "input": "+16505551234", "wa_id": "16505551234" }));

        let text =
            json!({ "messaging_product": "whatsapp", "to": "16505551234", "type": "text", "text": { "body": "hi" } });
        let (status, answer) = post(&sim, "marketing_messages", text.clone());
        assert_eq!((status, answer["error"]["code"].as_i64()), (400, Some(100)));
        assert_eq!(answer["error"]["message"], "(#100) Marketing messages must be templates");
        // The same text on /messages is an ordinary send, answered without message_status.
        let (status, answer) = post(&sim, "messages", text);
        assert_eq!(status, 200);
        assert!(answer["messages"][0].get("message_status").is_none());

        let received = sim.received();
        let endpoints: Vec<&str> = received.iter().map(Received::endpoint).collect();
        assert_eq!(endpoints, ["marketing_messages", "marketing_messages", "messages"]);
        assert_eq!(received[0].path, "/v23.0/123/marketing_messages");
        assert_eq!(received[0].wamid.as_deref(), Some(wamid.as_str()));
        assert_eq!(received[1].wamid, None);
    }

    #[test]
    fn group_sends_answer_with_the_group_and_refuse_unsupported_types() {
        let sim = GraphSim::start(0).unwrap();
        let send = |to: &str, kind: &str, object: Value| {
            let mut body =
                json!({ "messaging_product": "whatsapp", "recipient_type": "group", "to": to, "type": kind });
            body[kind] = object;
            post(&sim, "messages", body)
        };
        let media = || json!({ "id": "1003383421387256" });
        let objects = [
            ("text", json!({ "body": "hello group" })),
            ("image", media()),
            ("video", media()),
            ("audio", media()),
            ("document", media()),
            ("sticker", media()),
            ("template", template()),
        ];
        for (kind, object) in objects {
            let (status, answer) = send(GROUP, kind, object);
            assert_eq!(status, 200, "{kind}: {answer}");
            assert_eq!(answer["messages"][0]["group_id"], GROUP, "{kind}");
            assert!(answer["messages"][0]["id"].as_str().unwrap().starts_with("wamid."));
            assert_eq!(answer["contacts"], json!([{ "input": GROUP, "wa_id": GROUP }]));
        }
        // Every character of a group id survives, even those a phone number would lose.
        let odd = "+Y2Fw/aV9+ncm91cD==";
        let (_, answer) = send(odd, "text", json!({ "body": "x" }));
        assert_eq!(
            (answer["messages"][0]["group_id"].as_str(), answer["contacts"][0]["wa_id"].as_str()),
            (Some(odd), Some(odd))
        );

        let refused = [
            ("interactive", json!({ "type": "button", "body": { "text": "?" } })),
            ("location", json!({ "latitude": 1.0, "longitude": 2.0 })),
            ("reaction", json!({ "message_id": "wamid.x", "emoji": "👍" })),
            ("contacts", json!([])),
        ];
        for (kind, object) in refused {
            let (status, answer) = send(GROUP, kind, object);
            assert_eq!((status, answer["error"]["code"].as_i64()), (400, Some(131009)), "{kind}");
            assert_eq!(
                answer["error"]["message"],
                "(#131009) Parameter value is not valid: this message type is not supported in groups"
            );
        }
        let received = sim.received();
        assert_eq!(received.iter().filter(|r| r.wamid.is_some()).count(), 8);
        assert_eq!(received[0].json()["to"], GROUP);
    }

    /// Collects the webhooks the simulator posts back.
    #[derive(Default)]
    struct Inbox(Mutex<Vec<Value>>);

    impl bounded_http::Handler for Inbox {
        fn handle(&self, request: Request) -> Response {
            self.0.lock().unwrap().push(serde_json::from_slice(&request.body).unwrap_or(Value::Null));
            Response::text(200, "ok")
        }
    }

    struct To(String);

    impl Directory for To {
        fn lookup(&self, _: &str) -> Option<WebhookTarget> {
            Some(WebhookTarget { url: self.0.clone(), app_secret: "secret".into() })
        }
    }

    #[test]
    fn group_sends_get_sent_once_then_delivered_and_read_per_participant() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let url = format!("http://{}/webhook/x", listener.local_addr().unwrap());
        let inbox = Arc::new(Inbox::default());
        bounded_http::serve(listener, Limits::default(), bounded_http::Tls::plain(), inbox.clone()).unwrap();
        let options = Options { statuses: Some(Arc::new(To(url))), ..Options::default() };
        let sim = GraphSim::start_with(0, options).unwrap();
        sim.set_group_participants(GROUP, &["15550002001", "15550002002", "15550002003"]);
        let text = |to: &str| {
            json!({ "messaging_product": "whatsapp", "recipient_type": "group", "to": to,
                                      "type": "text", "text": { "body": "hi" } })
        };
        let (_, known) = post(&sim, "messages", text(GROUP));
        let (_, unknown) = post(&sim, "messages", text("T3RoZXJHcm91cA"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while inbox.0.lock().unwrap().len() < 6 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let posted = inbox.0.lock().unwrap().clone();
        assert_eq!(posted.len(), 6);
        for (answer, group, participants) in [
            (&known, GROUP, vec!["15550002001", "15550002002", "15550002003"]),
            (&unknown, "T3RoZXJHcm91cA", DEFAULT_GROUP_PARTICIPANTS.to_vec()),
        ] {
            let wamid = answer["messages"][0]["id"].as_str().unwrap();
            let statuses = |status: &str| -> Vec<Value> {
                posted
                    .iter()
                    .filter(|b| b["entry"][0]["changes"][0]["field"] == "messages")
                    .flat_map(|b| b["entry"][0]["changes"][0]["value"]["statuses"].as_array().unwrap().clone())
                    .filter(|s| s["id"] == wamid && s["status"] == status)
                    .collect()
            };
            let sent = statuses("sent");
            assert_eq!(sent.len(), 1);
            assert_eq!(
                (sent[0]["recipient_id"].as_str(), sent[0]["recipient_type"].as_str()),
                (Some(group), Some("group"))
            );
            for status in ["delivered", "read"] {
                let items = statuses(status);
                let who: Vec<&str> = items.iter().map(|s| s["recipient_participant_id"].as_str().unwrap()).collect();
                assert_eq!(who, participants, "{status}");
                assert!(items.iter().all(|s| s["recipient_id"] == group));
            }
        }
        // Each status kind of a send is one webhook: Meta aggregates the participants.
        assert!(posted.iter().all(|b| b["entry"][0]["changes"].as_array().unwrap().len() == 1));
    }

    #[test]
    fn base64_matches_known_answers() {
        // sha256("") in base64, as Meta would print it.
        assert_eq!(sha256_base64(b""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    }
}
