//! The running simulator: [`GraphSim`], which starts the HTTP server and is how a test scripts
//! and inspects it, and the dispatch of each request to its endpoint.

use super::media::media_and_templates;
use super::sends::answer;
use super::state::{Group, Media, State};
use super::statuses::{post_statuses, schedule_for_send};
use super::{Fault, Options, Received};
use bounded_http::{Limits, Request, Response};
use serde_json::Value;
use std::net::SocketAddr;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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

    /// Requires `token` as the Bearer token for sends from `phone_number_id`, and for its media
    /// lookups (`GET /{version}/{media_id}?phone_number_id=…`).
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
    /// participant. Unset groups have two (`DEFAULT_GROUP_PARTICIPANTS` of `statuses.rs`).
    pub fn set_group_participants(&self, group_id: &str, wa_ids: &[&str]) {
        let wa_ids = wa_ids.iter().map(|w| w.to_string()).collect();
        self.state.group_participants.lock().unwrap().insert(group_id.to_string(), wa_ids);
    }

    /// The group a `POST /{phone_number_id}/groups` answered `request_id` for. Meta tells the
    /// group's id with its `group_create` webhook: a test posts it
    /// (`payloads::group_lifecycle_value`, whose request id is this one).
    pub fn group_created_by(&self, request_id: &str) -> Option<String> {
        self.state.group_requests.lock().unwrap().get(request_id).cloned()
    }

    /// Makes a group known to the management endpoints (invite link, join requests,
    /// participants), as one created through them is.
    pub fn add_group(&self, group_id: &str) {
        self.state.groups.lock().unwrap().entry(group_id.to_string()).or_insert_with(|| Group::new(group_id));
    }

    /// A customer asks to join the group by its invite link (a group that needs approval):
    /// returns the join request's id.
    pub fn add_join_request(&self, group_id: &str, wa_id: &str) -> String {
        let id = format!("MTY0NjcwNDM1OTU6{}", 1_000_000 + self.state.next_id.fetch_add(1, Ordering::Relaxed));
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut groups = self.state.groups.lock().unwrap();
        let group = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id));
        group.join_requests.push((id.clone(), wa_id.to_string(), at as i64));
        id
    }

    /// Who is in the group now, as its management endpoints see it (approvals add, removals
    /// take away).
    pub fn group_participants(&self, group_id: &str) -> Vec<String> {
        self.state.group_participants.lock().unwrap().get(group_id).cloned().unwrap_or_default()
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

    /// How many requests have arrived so far, including those not answered yet (see
    /// [`Self::received`]: a request is there once answered, after the latency).
    pub fn arrivals(&self) -> u64 {
        self.state.arrivals.load(std::sync::atomic::Ordering::SeqCst)
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
    state.arrivals.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let method = request.method.clone();
    let path = request.path().to_string();
    let authorization = request.header("Authorization").map(str::to_string);
    let body = String::from_utf8_lossy(&request.body).into_owned();
    if !state.options.latency.is_zero() {
        std::thread::sleep(state.options.latency);
    }
    if let Some((status, answer, _)) =
        super::actions::answer(state, &method, &path, request.query(), authorization.as_deref(), &body)
    {
        // (with the query: a template's deletion names it there)
        let path = if request.query().is_empty() { path } else { format!("{path}?{}", request.query()) };
        state.received.lock().unwrap().push(Received { method, path, authorization, body, wamid: None, at: arrived });
        state.arrived.notify_all();
        return match answer {
            None => Response::close(),
            Some(json) => Response::json(status, json.to_string()),
        };
    }
    if let Some(response) = media_and_templates(state, &request, authorization.as_deref()) {
        state.received.lock().unwrap().push(Received { method, path, authorization, body, wamid: None, at: arrived });
        state.arrived.notify_all();
        return response;
    }
    let (status, answer, wamid) = answer(state, &method, &path, authorization.as_deref(), &body);
    if let Some(wamid) = &wamid {
        schedule_for_send(state, &path, &body, wamid);
    }
    state.received.lock().unwrap().push(Received { method, path, authorization, body, wamid, at: arrived });
    state.arrived.notify_all();
    match answer {
        None => Response::close(), // Fault::Drop / Fault::Timeout: no answer
        Some(json) => Response::json(status, json.to_string()),
    }
}
