//! Outages: a channel whose sends get nothing but transport errors and 5xx is cut off from the
//! Graph API, not sending bad messages. Counting attempts would fail its whole queue after an
//! hour or so of Meta (or the network) being down, and let each customer's next message go out
//! ahead of the failed one. Instead, once it has failed that way for
//! `whatsapp_channel.outage_after`, the channel is marked unreachable
//! (`wa_channels.unreachable_since`, shown by `wa_channel_health`): its queue waits, one message
//! probes every `whatsapp_channel.outage_probe_every`, and the first answer resumes the whole
//! queue in order. Main thread only (it writes through [`store`]).

use super::store::{self, Claimed};
use crate::pg::guc;
use crate::{log, warning};
use std::collections::HashMap;
use std::time::SystemTime;

/// Per channel whose last sends got no answer: since when they have failed that way, and
/// whether the channel was declared unreachable (said once in the log).
#[derive(Default)]
pub struct Outages {
    failing: HashMap<i64, Failing>,
}

struct Failing {
    since: SystemTime,
    declared: bool,
}

impl Outages {
    /// Meta answered a send of this message's channel (accepted or refused it): the channel is
    /// reachable. A probe's answer resumes the channel's queue.
    pub fn answered(&mut self, message: &Claimed) {
        self.failing.remove(&message.channel_id);
        if message.probe {
            store::channel_reachable(message.channel_id);
            log!("whatsapp_channel: the Graph API answers channel {} again; its queue resumes", message.channel_id);
        }
    }

    /// A send of this message's channel got no answer (a transport error or a 5xx). Returns
    /// whether the channel is unreachable now: then the message waits for the next probe
    /// rather than for its own backoff.
    pub fn unanswered(&mut self, message: &Claimed) -> bool {
        let failing = self
            .failing
            .entry(message.channel_id)
            .or_insert_with(|| Failing { since: SystemTime::now(), declared: false });
        let failing_for = failing.since.elapsed().unwrap_or_default();
        if !message.probe && failing_for < guc::outage_after() {
            return false;
        }
        let probe_every = guc::outage_probe_every();
        store::channel_unreachable(message.channel_id, failing.since, probe_every);
        if !std::mem::replace(&mut failing.declared, true) && !message.probe {
            warning!(
                "whatsapp_channel: the Graph API has not answered channel {} for {} s; its queue waits and probes every {} ms \
                 until it answers (see wa_channel_health.graph_api_unreachable_since)",
                message.channel_id,
                failing_for.as_secs(),
                probe_every.as_millis()
            );
        }
        true
    }
}
