//! What the simulator remembers between requests: what it received, what it was told to do
//! (faults, tokens, media, templates, group members) and the status webhooks it still owes.

use super::{Fault, Options, Received};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

#[derive(Default)]
pub(super) struct State {
    pub(super) received: Mutex<Vec<Received>>,
    pub(super) arrived: Condvar,
    /// Requests that have arrived, answered or not yet (`received` has a request only once it
    /// is answered, after the latency): a test can crash a client while Meta holds its request.
    pub(super) arrivals: AtomicU64,
    /// Scripted answers per recipient (`to`), used first-in first-out.
    pub(super) faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    /// Bearer token each phone number id must present; unchecked when absent.
    pub(super) tokens: Mutex<HashMap<String, String>>,
    pub(super) next_id: AtomicU64,
    /// Unique to this run of the simulator, in every wamid it answers: Meta never gives out a
    /// wamid twice, and a simulator restarted against the same database must not either.
    pub(super) run_id: String,
    pub(super) options: Options,
    /// Status webhooks due, posted by one thread in time order: when, to which number, the
    /// body, and how many times posting it failed so far.
    pub(super) callbacks: Mutex<Vec<(Instant, String, Value, u32)>>,
    /// Status webhooks the listener answered 200: (wamid, status).
    pub(super) statuses_posted: Mutex<Vec<(String, String)>>,
    /// While set, every send is dropped without an answer, as when Meta or the network is down.
    pub(super) unreachable: std::sync::atomic::AtomicBool,
    pub(super) callback_due: Condvar,
    /// Media by id: uploaded, or added by a test to stand for a customer's photo.
    pub(super) media: Mutex<HashMap<String, Media>>,
    /// Message templates per WhatsApp Business Account id.
    pub(super) templates: Mutex<HashMap<String, Value>>,
    /// Our own base URL, for the download URLs we hand out.
    pub(super) base_url: Mutex<String>,
    /// Media whose next download answers 404, as an expired URL does.
    pub(super) expire_next: Mutex<std::collections::HashSet<String>>,
    /// Participants per group id, whose delivered/read statuses a group send gets.
    pub(super) group_participants: Mutex<HashMap<String, Vec<String>>>,
    /// The groups the management endpoints know, by id: created through the API or added by a
    /// test.
    pub(super) groups: Mutex<HashMap<String, Group>>,
    /// The group each creation's request id stands for.
    pub(super) group_requests: Mutex<HashMap<String, String>>,
}

impl State {
    /// Whether the Bearer token `presented` is refused for `phone_number_id`: none at all, or
    /// another than the one `GraphSim::require_token` set for that number.
    pub(super) fn refuses_token(&self, phone_number_id: &str, presented: Option<&str>) -> bool {
        let expected = self.tokens.lock().unwrap().get(phone_number_id).cloned();
        presented.is_none() || expected.is_some_and(|t| Some(t.as_str()) != presented)
    }
}

/// A group, as the Groups API's management endpoints see it.
pub(super) struct Group {
    pub(super) invite_link: String,
    /// How many times its link was reset: each reset makes a new one.
    pub(super) resets: u32,
    /// Open join requests: (join_request_id, wa_id, creation_timestamp).
    pub(super) join_requests: Vec<(String, String, i64)>,
}

impl Group {
    pub(super) fn new(group_id: &str) -> Group {
        Group { invite_link: crate::payloads::group_invite_link(group_id), resets: 0, join_requests: Vec::new() }
    }
}

#[derive(Clone)]
pub(super) struct Media {
    pub(super) mime_type: String,
    pub(super) bytes: Vec<u8>,
}
