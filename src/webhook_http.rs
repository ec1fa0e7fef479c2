//! The HTTP side of the webhook listener. These threads never call into Postgres (pgrx panics
//! if they do): they route, enforce the body limit, check signatures and parse JSON, then hand
//! a verified payload to the worker's main thread and wait for its answer, which comes only
//! after COMMIT. Log lines go to the main thread too, so they land in the server log.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tiny_http::{Header, Method, Request, Response, Server};
use whatsapp_cloud::signature;
use whatsapp_cloud::webhook::{self, HandshakeError, ParseError, Payload};

/// Webhook URLs are `<public_url>/webhook/<channel name>`.
pub const PATH_PREFIX: &str = "/webhook/";

/// How long a request waits for the main thread to store it before it gets a 503.
const STORE_TIMEOUT: Duration = Duration::from_secs(60);

/// A channel as the HTTP threads see it.
#[derive(Debug)]
pub struct ChannelKeys {
    pub id: i64,
    pub name: String,
    pub phone_number_id: String,
    pub app_secret: Vec<u8>,
    pub verify_token: String,
}

/// What the main thread shares with the HTTP threads.
#[derive(Default)]
pub struct Shared {
    channels: RwLock<HashMap<String, Arc<ChannelKeys>>>,
    /// False while the extension is not created in the database: requests get a 503.
    installed: AtomicBool,
    pub max_body_bytes: AtomicUsize,
}

impl Shared {
    pub fn set_channels(&self, installed: bool, channels: Vec<ChannelKeys>) {
        let map = channels.into_iter().map(|c| (c.name.clone(), Arc::new(c))).collect();
        *self.channels.write().unwrap_or_else(|p| p.into_inner()) = map;
        self.installed.store(installed, Ordering::Release);
    }

    fn channel(&self, name: &str) -> Option<Arc<ChannelKeys>> {
        self.channels.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// The channel a change is for (see [`route`]).
    pub fn route(&self, from: &ChannelKeys, phone_number_id: Option<&str>) -> Option<i64> {
        route(self.channels.read().unwrap_or_else(|p| p.into_inner()).values().map(Arc::as_ref), from, phone_number_id)
    }
}

/// The channel a change is for. Meta has one callback URL per app, so a POST to one channel's
/// URL may carry updates for another number of the same app: those are routed by
/// `metadata.phone_number_id`, but only to a channel with the same app secret (the same app);
/// `None` means no such channel exists.
pub fn route<'a>(
    channels: impl IntoIterator<Item = &'a ChannelKeys>,
    from: &ChannelKeys,
    phone_number_id: Option<&str>,
) -> Option<i64> {
    match phone_number_id {
        None => Some(from.id),
        Some(p) if p == from.phone_number_id => Some(from.id),
        Some(p) => {
            channels.into_iter().find(|c| c.phone_number_id == p && c.app_secret == from.app_secret).map(|c| c.id)
        }
    }
}

/// A POST whose signature checked out, parsed (or not) off the main thread.
pub struct Verified {
    pub channel: Arc<ChannelKeys>,
    pub body: Vec<u8>,
    pub payload: Result<Payload, ParseError>,
}

/// Work for the main thread.
pub enum Job {
    /// Store this and answer whether it committed (`Err` carries the reason it did not).
    Store(Verified, SyncSender<Result<(), String>>),
    /// Re-read the channels (a new channel, a changed secret) unless that was done after
    /// this instant, then answer.
    Reload(Instant, SyncSender<()>),
    /// A line for the server log, and perhaps a count in `wa_channel_counters`.
    Report(Report),
}

pub struct Report {
    pub level: LogLevel,
    pub line: String,
    pub counter: Option<Counter>,
}

/// One more of `kind` for a channel (`detail`: the likely cause, shown in wa_channel_health).
pub struct Counter {
    pub channel_id: i64,
    pub kind: &'static str,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub enum LogLevel {
    Log,
    Warning,
}

/// Starts `threads` request handlers on `server`. Returns the receiving end for the main thread.
pub fn spawn(server: Arc<Server>, shared: Arc<Shared>, threads: usize, queue: usize) -> Receiver<Job> {
    let (jobs, receiver) = sync_channel(queue);
    for i in 0..threads {
        let (server, shared, jobs) = (server.clone(), shared.clone(), jobs.clone());
        std::thread::Builder::new()
            .name(format!("wa-webhook-{i}"))
            .spawn(move || {
                while let Ok(request) = server.recv() {
                    let handler = Handler { shared: &shared, jobs: &jobs };
                    handler.handle(request);
                }
            })
            .expect("spawning a webhook thread");
    }
    receiver
}

struct Handler<'a> {
    shared: &'a Shared,
    jobs: &'a SyncSender<Job>,
}

impl Handler<'_> {
    fn handle(&self, mut request: Request) {
        let url = request.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let Some(name) = path.strip_prefix(PATH_PREFIX).filter(|n| !n.is_empty() && !n.contains('/')) else {
            return reply(request, 404, "Not found: webhook URLs end in /webhook/<channel>");
        };
        let Some(channel) = self.channel(name) else {
            if !self.shared.installed.load(Ordering::Acquire) {
                return reply(request, 503, "whatsapp_channel is not installed in whatsapp_channel.database yet");
            }
            return reply(request, 404, "Unknown channel");
        };
        match request.method() {
            Method::Get => self.handshake(request, &channel, query),
            Method::Post => {
                let body = match self.read_body(&mut request, &channel) {
                    Ok(body) => body,
                    Err((status, text)) => return reply(request, status, text),
                };
                let header = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv(signature::HEADER))
                    .map(|h| h.value.as_str().to_string());
                self.post(request, channel, body, header.as_deref())
            }
            _ => reply(request, 405, "Method not allowed: Meta sends GET (verification) and POST (events)"),
        }
    }

    /// Looks a channel up; on a miss, asks the main thread to re-read the channels once, so a
    /// channel added a moment ago (Meta verifies right after "Verify and Save") is found.
    fn channel(&self, name: &str) -> Option<Arc<ChannelKeys>> {
        self.shared.channel(name).or_else(|| {
            self.reload();
            self.shared.channel(name)
        })
    }

    fn reload(&self) {
        let (tx, rx) = sync_channel(1);
        if self.jobs.send(Job::Reload(Instant::now(), tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(5));
        }
    }

    fn handshake(&self, request: Request, channel: &ChannelKeys, query: &str) {
        match webhook::verify_subscription(query, &channel.verify_token) {
            Ok(challenge) => {
                let line = format!("webhook verified by Meta for channel '{}'", channel.name);
                self.report(LogLevel::Log, line, Some((channel, "verified", None)));
                reply(request, 200, &challenge)
            }
            Err(HandshakeError::TokenMismatch) => {
                let line = format!(
                    "webhook verification failed: verify token does not match the one set for channel '{}'. \
                     Enter the same verify_token in Meta's webhook settings as in wa_add_channel()",
                    channel.name
                );
                let cause = "verify token does not match the one set for the channel";
                self.report(LogLevel::Warning, line, Some((channel, "verify_token_mismatch", Some(cause))));
                reply(request, 403, "Verify token mismatch")
            }
            Err(HandshakeError::NotSubscribe) => reply(request, 403, "Expected hub.mode=subscribe"),
            Err(HandshakeError::NoChallenge) => reply(request, 403, "Missing hub.challenge"),
        }
    }

    fn read_body(&self, request: &mut Request, channel: &ChannelKeys) -> Result<Vec<u8>, (u16, &'static str)> {
        let max = self.shared.max_body_bytes.load(Ordering::Relaxed);
        let too_large = || {
            let line = format!(
                "webhook POST for channel '{}' refused: body larger than whatsapp_channel.max_body_bytes ({max})",
                channel.name
            );
            self.report(LogLevel::Warning, line, Some((channel, "too_large", None)));
            (413, "Payload too large")
        };
        if request.body_length().is_some_and(|len| len > max) {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(request.body_length().unwrap_or(0).min(max));
        if request.as_reader().take(max as u64 + 1).read_to_end(&mut body).is_err() {
            return Err((400, "Could not read the request body"));
        }
        if body.len() > max {
            return Err(too_large());
        }
        Ok(body)
    }

    fn post(&self, request: Request, mut channel: Arc<ChannelKeys>, body: Vec<u8>, header: Option<&str>) {
        let mut verdict = signature::verify(&channel.app_secret, &body, header);
        if verdict == Err(signature::Mismatch::WrongSecret) {
            // Perhaps the app secret was just changed: re-read it once before refusing.
            self.reload();
            if let Some(fresh) = self.shared.channel(&channel.name) {
                if fresh.app_secret != channel.app_secret {
                    verdict = signature::verify(&fresh.app_secret, &body, header);
                    channel = fresh;
                }
            }
        }
        if let Err(mismatch) = verdict {
            let line = format!(
                "webhook POST for channel '{}' refused: Signature mismatch. Likely cause: {}",
                channel.name,
                mismatch.likely_cause()
            );
            self.report(LogLevel::Warning, line, Some((&channel, "signature_mismatch", Some(mismatch.likely_cause()))));
            return reply(request, 401, "Signature mismatch");
        }
        let payload = webhook::parse(&body);
        let (tx, rx) = sync_channel(1);
        if let Err(e) = self.jobs.try_send(Job::Store(Verified { channel, body, payload }, tx)) {
            let reason = match e {
                TrySendError::Full(_) => "the listener is overloaded",
                TrySendError::Disconnected(_) => "the listener is restarting",
            };
            self.report(
                LogLevel::Warning,
                format!("webhook POST answered 503: {reason}; Meta will redeliver it"),
                None,
            );
            return reply(request, 503, "Busy, retry later");
        }
        match rx.recv_timeout(STORE_TIMEOUT) {
            Ok(Ok(())) => reply(request, 200, "OK"),
            Ok(Err(reason)) => {
                let line = format!("webhook POST could not be stored, answered 500 so Meta redelivers: {reason}");
                self.report(LogLevel::Warning, line, None);
                reply(request, 500, "Could not store the event; it will be redelivered")
            }
            Err(_) => reply(request, 503, "Timed out storing the event; it will be redelivered"),
        }
    }

    /// Sends a log line (and a count for the channel) to the main thread. If its queue is
    /// full the line goes to stderr, which also ends in the server log; the count is dropped.
    fn report(&self, level: LogLevel, line: String, counter: Option<(&ChannelKeys, &'static str, Option<&str>)>) {
        let counter =
            counter.map(|(c, kind, detail)| Counter { channel_id: c.id, kind, detail: detail.map(str::to_string) });
        if let Err(TrySendError::Full(Job::Report(r))) =
            self.jobs.try_send(Job::Report(Report { level, line, counter }))
        {
            eprintln!("whatsapp_channel: {}", r.line);
        }
    }
}

fn reply(request: Request, status: u16, body: &str) {
    let content_type = Header::from_bytes("Content-Type", "text/plain; charset=utf-8").expect("static header");
    let response = Response::from_string(body).with_status_code(status).with_header(content_type);
    let _ = request.respond(response); // the client may be gone; nothing to do about it
}
