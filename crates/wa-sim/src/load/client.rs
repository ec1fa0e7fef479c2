//! One client thread of the load: what it posts (items drawn from the mix, messages from the
//! customer model, wamids numbered per thread) and what it remembers of each POST.

use super::{LoadOptions, micros, tls_trusting};
use crate::customers::{Item, Rng, Sender, Senders};
use crate::payloads;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// About 500 bytes of single-message POST in all, like the peers' benchmark (performance.md).
const TEXT: &str = "Hi! Does the blue jacket come in another color? Can I still change my order?";

/// One POST as a client thread saw it. Its wamids are numbered: messages
/// `first_message..first_message + messages`, statuses likewise, within the thread.
pub(super) struct Post {
    /// When it was sent: µs since the run's epoch.
    pub(super) at_us: u64,
    pub(super) first_message: u64,
    pub(super) messages: u32,
    pub(super) first_status: u64,
    pub(super) statuses: u32,
    /// `Some(status)` if answered, `None` on a transport error.
    pub(super) status: Option<u16>,
    pub(super) answer_us: u32,
}

pub(super) struct ClientResult {
    pub(super) thread: usize,
    pub(super) posts: Vec<Post>,
    pub(super) first_error: Option<String>,
}

/// What the client threads share.
pub(super) struct Shared {
    pub(super) senders: Senders,
    /// Messages still to send when the run has `max_messages`.
    pub(super) budget: Option<AtomicU64>,
    /// Messages sent so far, for the progress line.
    pub(super) messages_sent: AtomicU64,
    /// One bit per pool customer who wrote: the run's distinct senders.
    pub(super) pool_used: Vec<AtomicU64>,
}

impl Shared {
    /// Takes up to `want` messages from the budget; 0 when it is spent.
    pub(super) fn claim(&self, want: u64) -> u64 {
        match &self.budget {
            None => want,
            Some(budget) => budget
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| (left > 0).then(|| left - left.min(want)))
                .map_or(0, |left| left.min(want)),
        }
    }

    pub(super) fn budget_spent(&self) -> bool {
        self.budget.as_ref().is_some_and(|b| b.load(Ordering::SeqCst) == 0)
    }

    pub(super) fn mark_sender(&self, sender: Sender) {
        if let Sender::Pool(i) = sender {
            let bit = i - self.senders.offset;
            self.pool_used[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        }
    }

    pub(super) fn distinct_senders(&self) -> u64 {
        let pool: u64 = self.pool_used.iter().map(|w| u64::from(w.load(Ordering::Relaxed).count_ones())).sum();
        pool + self.senders.new_customers()
    }
}

pub(super) fn message_wamid(run_tag: &str, thread: usize, n: u64) -> String {
    format!("wamid.LOAD.{run_tag}.{thread}.{n}")
}

pub(super) fn status_wamid(run_tag: &str, thread: usize, n: u64) -> String {
    format!("wamid.LOADST.{run_tag}.{thread}.{n}")
}

/// One client: one agent, at most one idle connection, POSTs until the deadline or the end of
/// the budget (back to back, or in its slots of `options.rate`).
#[allow(clippy::too_many_arguments)]
pub(super) fn client(
    options: &LoadOptions,
    shared: &Shared,
    run_tag: &str,
    n: usize,
    seed: u64,
    epoch: Instant,
    start: Instant,
    deadline: Instant,
) -> ClientResult {
    // Through the cache: ureq 3 would otherwise resolve the host on a thread of its own, spawned
    // for every request (with a timeout set, before it looks in its pool), which made this load
    // generator spend a sixth of its CPU starting threads.
    let agent = cached_resolver::agent(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(1)
            .max_idle_connections_per_host(1)
            .timeout_global(Some(Duration::from_secs(30)))
            .tls_config(tls_trusting(options.trusted_pem.as_deref()).unwrap_or_default())
            .build(),
    );
    let mut rng = Rng::new(seed);
    let mut result = ClientResult { thread: n, posts: Vec::new(), first_error: None };
    // With a rate, this client's slots are every `interval`, offset so the clients interleave.
    let interval = options.rate.map(|r| Duration::from_secs_f64(options.concurrency as f64 / r));
    let phase = interval.map(|i| i.mul_f64(n as f64 / options.concurrency as f64));
    let (mut next_message, mut next_status) = (1u64, 1u64);
    let mut slot_number: u64 = 0;
    while Instant::now() < deadline && !shared.budget_spent() {
        if let (Some(interval), Some(phase)) = (interval, phase) {
            let slot = start + phase + interval.mul_f64(slot_number as f64);
            if slot >= deadline {
                break;
            }
            thread::sleep(slot.saturating_duration_since(Instant::now()));
        }
        slot_number += 1;

        // What this POST carries; with a budget, only as many messages as are left.
        let items: Vec<Item> = (0..options.batch).map(|_| options.mix.pick(&mut rng)).collect();
        let wanted = items.iter().filter(|i| matches!(i, Item::Message(_))).count() as u64;
        let mut allowed = if wanted > 0 { shared.claim(wanted) } else { 0 };
        if wanted > 0 && allowed == 0 {
            break;
        }
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let (first_message, first_status) = (next_message, next_status);
        let (mut messages, mut statuses) = (Vec::new(), Vec::new());
        for item in items {
            match item {
                Item::Message(kind) if allowed > 0 => {
                    allowed -= 1;
                    let sender = shared.senders.pick(&mut rng);
                    shared.mark_sender(sender);
                    let wamid = message_wamid(run_tag, n, next_message);
                    next_message += 1;
                    let value = payloads::message_value(kind, &wamid, &sender.customer(), TEXT, timestamp)
                        .expect("the mix holds known kinds only");
                    messages.push(value);
                }
                Item::Message(_) => {} // over the budget
                Item::Status => {
                    let wamid = status_wamid(run_tag, n, next_status);
                    next_status += 1;
                    let status = if rng.below(2) == 0 { "delivered" } else { "read" };
                    let recipient = shared.senders.pick_pool(&mut rng).customer().wa_id;
                    statuses.push(payloads::status_value(status, &wamid, &recipient, timestamp));
                }
            }
        }
        let message_count = messages.len() as u32;
        let status_count = statuses.len() as u32;
        // Messages in one change, statuses in another (see payloads::merge_values).
        let changes: Vec<_> =
            [messages, statuses].into_iter().filter(|v| !v.is_empty()).map(payloads::merge_values).collect();
        let body = payloads::batch(&options.phone_number_id, changes).to_string().into_bytes();
        let signature = whatsapp_cloud::signature::sign(options.app_secret.as_bytes(), &body);
        let at = Instant::now();
        let answer = agent
            .post(&options.url)
            .content_type("application/json")
            .header(whatsapp_cloud::signature::HEADER, &signature)
            .send(&body[..])
            .and_then(|mut response| {
                // Read the whole answer, so the connection goes back to the pool.
                let _ = response.body_mut().read_to_vec()?;
                Ok(response.status().as_u16())
            });
        let answer_us = micros(at.elapsed()).min(u64::from(u32::MAX)) as u32;
        let status = match answer {
            Ok(status) => Some(status),
            Err(e) => {
                result.first_error.get_or_insert_with(|| format!("POST {}: {e}", options.url));
                // Do not spin on a listener that is down; the deadline still bounds the loop.
                thread::sleep(Duration::from_millis(10));
                None
            }
        };
        shared.messages_sent.fetch_add(u64::from(message_count), Ordering::Relaxed);
        result.posts.push(Post {
            at_us: micros(at - epoch),
            first_message,
            messages: message_count,
            first_status,
            statuses: status_count,
            status,
            answer_us,
        });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn shared(budget: Option<u64>) -> Shared {
        Shared {
            senders: Senders::new(100, 0, 0.0, 1).unwrap(),
            budget: budget.map(AtomicU64::new),
            messages_sent: AtomicU64::new(0),
            pool_used: (0..2).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[test]
    fn the_budget_hands_out_exactly_max_messages() {
        let s = shared(Some(250));
        assert_eq!(s.claim(100), 100);
        assert_eq!(s.claim(100), 100);
        assert!(!s.budget_spent());
        assert_eq!(s.claim(100), 50);
        assert!(s.budget_spent());
        assert_eq!(s.claim(100), 0);
        let unlimited = shared(None);
        assert_eq!(unlimited.claim(100), 100);
        assert!(!unlimited.budget_spent());
        // Many threads at once still hand out no more than the budget.
        let s = Arc::new(shared(Some(100_000)));
        let total: u64 = (0..8)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || (0..10_000).map(|_| s.claim(3)).sum::<u64>())
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(total, 100_000);
    }

    #[test]
    fn distinct_senders_count_each_pool_customer_once() {
        let s = shared(None);
        for i in [0, 5, 5, 99, 64, 0] {
            s.mark_sender(Sender::Pool(i));
        }
        s.mark_sender(Sender::New(12));
        assert_eq!(s.distinct_senders(), 4); // new customers are counted by Senders::pick
    }

    #[test]
    fn wamids_are_numbered_per_run_and_thread() {
        assert_eq!(message_wamid("17.3", 2, 9), "wamid.LOAD.17.3.2.9");
        assert_eq!(status_wamid("17.3", 2, 9), "wamid.LOADST.17.3.2.9");
        // A status wamid never matches the messages' LIKE 'wamid.LOAD.%' prefix of a run.
        assert!(!status_wamid("17.3", 2, 9).starts_with("wamid.LOAD.17.3."));
    }
}
