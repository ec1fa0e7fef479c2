//! Who writes in, and what: the load generator's model of a business number's customers.
//!
//! - A **pool** of customers who write again and again. Customer `i` is always WhatsApp id
//!   `1555` + `i` in 7 digits and profile name `Customer i`, so that a run which picks the same
//!   customer as an earlier run (or a seeding run) finds the same contact and does not rewrite
//!   its profile. [`POOL_CAPACITY`] (10 million) customers fit; a run uses `offset..offset + size`.
//! - **New customers**, who never wrote before: `1999` + 10 digits, numbered from a base drawn
//!   from the run's start time and process id, one new number per message. The two ranges are
//!   disjoint, and two runs collide only if their bases land within the numbers they used of
//!   each other in a space of 10^10.
//! - A **mix** of what they send: message kinds of [`payloads::MESSAGE_KINDS`] and `status`
//!   (a `delivered` or `read` webhook for a wamid that does not exist), by weight.
//!
//! Picks come from [`Rng`], a small seedable generator (splitmix64): fast, deterministic for
//! tests, and no dependency.

use crate::payloads::{self, Customer};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Pool customers fit in `1555` + 7 digits: 10 million of them.
pub const POOL_CAPACITY: u64 = 10_000_000;
/// New customers are `1999` + 10 digits (14 digits, within E.164's 15).
const NEW_CUSTOMER_SPACE: u64 = 10_000_000_000;

/// Splitmix64: a tiny, well-mixed, seedable generator. Not for anything secret.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift: the bias is below 2^-32 for any n used here.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A customer as the model numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sender {
    /// Pool customer `i` (absolute, offset included).
    Pool(u64),
    /// The `n`-th new customer number (base included, below 10^10).
    New(u64),
}

impl Sender {
    pub fn customer(self) -> Customer {
        match self {
            Sender::Pool(i) => Customer { wa_id: format!("1555{i:07}"), name: format!("Customer {i}") },
            Sender::New(n) => Customer { wa_id: format!("1999{n:010}"), name: format!("New customer {n}") },
        }
    }
}

/// Which customers a run's messages come from.
#[derive(Debug)]
pub struct Senders {
    /// Pool size: customers `offset..offset + pool`.
    pub pool: u64,
    pub offset: u64,
    /// Share of messages (0..=1) that come from a new customer instead of the pool.
    pub new_share: f64,
    /// The first new customer number of this run.
    new_base: u64,
    /// New customer numbers handed out so far (shared by all client threads).
    new_used: AtomicU64,
}

impl Senders {
    /// `run_seed` decides where this run's new customers start (give each run its own).
    pub fn new(pool: u64, offset: u64, new_share: f64, run_seed: u64) -> Result<Senders, String> {
        if pool == 0 {
            return Err("--senders must be at least 1".into());
        }
        if offset.checked_add(pool).is_none_or(|end| end > POOL_CAPACITY) {
            return Err(format!(
                "--sender-offset {offset} + --senders {pool} is over {POOL_CAPACITY}: pool customers are 1555 + 7 digits"
            ));
        }
        if !(0.0..=1.0).contains(&new_share) {
            return Err(format!("--new-share {new_share} must be between 0 and 1"));
        }
        let new_base = Rng::new(run_seed).below(NEW_CUSTOMER_SPACE);
        Ok(Senders { pool, offset, new_share, new_base, new_used: AtomicU64::new(0) })
    }

    /// The sender of the next message.
    pub fn pick(&self, rng: &mut Rng) -> Sender {
        if self.new_share > 0.0 && rng.unit() < self.new_share {
            let n = self.new_used.fetch_add(1, Ordering::Relaxed);
            Sender::New((self.new_base + n) % NEW_CUSTOMER_SPACE)
        } else {
            self.pick_pool(rng)
        }
    }

    /// A pool customer (the recipient of a status: someone the business wrote to).
    pub fn pick_pool(&self, rng: &mut Rng) -> Sender {
        Sender::Pool(self.offset + rng.below(self.pool))
    }

    /// How many new customers wrote so far.
    pub fn new_customers(&self) -> u64 {
        self.new_used.load(Ordering::Relaxed)
    }
}

/// One item of a webhook: a message of a kind, or a status of an outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    Message(&'static str),
    Status,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Message(kind) => f.write_str(kind),
            Item::Status => f.write_str("status"),
        }
    }
}

/// What the customers send, by weight: `text=80,image=10,status=10`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    weights: Vec<(Item, u64)>,
    total: u64,
}

impl Default for Mix {
    /// Text messages only.
    fn default() -> Mix {
        Mix { weights: vec![(Item::Message("text"), 1)], total: 1 }
    }
}

impl Mix {
    /// Parses `kind=weight,...`. Kinds: those of [`payloads::MESSAGE_KINDS`] except `system`,
    /// and `status`. Weights are whole numbers, relative to their sum.
    pub fn parse(spec: &str) -> Result<Mix, String> {
        let known = || {
            let kinds: Vec<&str> =
                payloads::MESSAGE_KINDS.iter().copied().filter(|k| *k != "system").chain(["status"]).collect();
            kinds.join(", ")
        };
        let mut weights: Vec<(Item, u64)> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, weight) = part.split_once('=').ok_or_else(|| {
                format!("--mix {spec:?}: {part:?} is not kind=weight (e.g. text=80,image=10,status=10)")
            })?;
            let (kind, weight) = (kind.trim(), weight.trim());
            let item = match kind {
                "status" => Item::Status,
                // It renumbers the customer (user_changed_number to one fixed number), which
                // would merge the pool's contacts into one and refuse the rest.
                "system" => {
                    return Err(format!("--mix {spec:?}: system messages change the sender's number; not in a load"));
                }
                _ => Item::Message(
                    payloads::MESSAGE_KINDS
                        .iter()
                        .copied()
                        .find(|k| *k == kind)
                        .ok_or_else(|| format!("--mix {spec:?}: unknown kind {kind:?}; kinds: {}", known()))?,
                ),
            };
            let weight: u64 = weight.parse().ok().filter(|w| *w <= 1_000_000).ok_or_else(|| {
                format!("--mix {spec:?}: the weight of {kind} ({weight:?}) is not a whole number 0..1000000")
            })?;
            if weights.iter().any(|(i, _)| *i == item) {
                return Err(format!("--mix {spec:?}: {kind} is given twice"));
            }
            weights.push((item, weight));
        }
        weights.retain(|(_, w)| *w > 0);
        let total = weights.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return Err(format!("--mix {spec:?}: give at least one kind with a weight above 0, e.g. text=100"));
        }
        Ok(Mix { weights, total })
    }

    pub fn pick(&self, rng: &mut Rng) -> Item {
        let mut ticket = rng.below(self.total);
        for (item, weight) in &self.weights {
            if ticket < *weight {
                return *item;
            }
            ticket -= weight;
        }
        unreachable!("the ticket is below the total of the weights")
    }

    /// The share (0..1) of items that are statuses.
    pub fn status_share(&self) -> f64 {
        let statuses: u64 = self.weights.iter().filter(|(i, _)| *i == Item::Status).map(|(_, w)| w).sum();
        statuses as f64 / self.total as f64
    }
}

/// `text=80,image=10,status=10`, as parsed (kinds with weight 0 left out).
impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.weights.iter().map(|(item, w)| format!("{item}={w}")).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn pool_customers_are_stable_and_distinct() {
        assert_eq!(Sender::Pool(0).customer().wa_id, "15550000000");
        assert_eq!(Sender::Pool(123456).customer().wa_id, "15550123456");
        assert_eq!(Sender::Pool(123456).customer().name, "Customer 123456");
        assert_eq!(Sender::Pool(POOL_CAPACITY - 1).customer().wa_id, "15559999999");
        // The same customer every time, whatever the run.
        let a = Sender::Pool(42).customer();
        let b = Sender::Pool(42).customer();
        assert_eq!((a.wa_id, a.name), (b.wa_id, b.name));
        // A million and more distinct ids, each a valid E.164 number of fixed width.
        let ids: HashSet<String> = (0..1_200_000).map(|i| Sender::Pool(i).customer().wa_id).collect();
        assert_eq!(ids.len(), 1_200_000);
        for i in [0, 999_999, 1_199_999] {
            let id = Sender::Pool(i).customer().wa_id;
            assert_eq!(id.len(), 11);
            assert_eq!(whatsapp_cloud::phone::normalize(&id), Ok(format!("+{id}")));
        }
    }

    #[test]
    fn new_customers_are_outside_the_pool_and_differ_between_runs() {
        let new = Sender::New(NEW_CUSTOMER_SPACE - 1).customer().wa_id;
        assert_eq!(new, "19999999999999");
        assert!(whatsapp_cloud::phone::normalize(&new).is_ok());
        assert!(!new.starts_with("1555"));
        // Every pick is a new number within a run.
        let senders = Senders::new(10, 0, 1.0, 7).unwrap();
        let mut rng = Rng::new(1);
        let picked: HashSet<Sender> = (0..1000).map(|_| senders.pick(&mut rng)).collect();
        assert_eq!(picked.len(), 1000);
        assert_eq!(senders.new_customers(), 1000);
        // Another run (another seed) starts elsewhere.
        let other = Senders::new(10, 0, 1.0, 8).unwrap();
        assert_ne!(other.pick(&mut rng), Sender::New(senders.new_base));
    }

    #[test]
    fn picks_stay_in_the_pool_and_respect_the_new_share() {
        let senders = Senders::new(1000, 5000, 0.05, 3).unwrap();
        let mut rng = Rng::new(99);
        let mut new = 0;
        let mut pool = HashSet::new();
        for _ in 0..100_000 {
            match senders.pick(&mut rng) {
                Sender::Pool(i) => {
                    assert!((5000..6000).contains(&i), "{i}");
                    pool.insert(i);
                }
                Sender::New(_) => new += 1,
            }
        }
        assert!((4_500..5_500).contains(&new), "{new} new of 100,000 at 5%");
        assert_eq!(pool.len(), 1000, "every pool customer is picked");
        let none = Senders::new(10, 0, 0.0, 3).unwrap();
        assert!((0..10_000).all(|_| matches!(none.pick(&mut rng), Sender::Pool(_))));
    }

    #[test]
    fn bad_sender_settings_are_refused() {
        assert!(Senders::new(0, 0, 0.0, 1).unwrap_err().contains("at least 1"));
        assert!(Senders::new(POOL_CAPACITY, 1, 0.0, 1).unwrap_err().contains("over 10000000"));
        assert!(Senders::new(POOL_CAPACITY, 0, 0.0, 1).is_ok());
        assert!(Senders::new(10, 0, 1.5, 1).unwrap_err().contains("between 0 and 1"));
        assert!(Senders::new(10, 0, f64::NAN, 1).is_err());
    }

    #[test]
    fn the_generator_is_deterministic_and_spreads() {
        let a: Vec<u64> = {
            let mut r = Rng::new(5);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let mut r = Rng::new(5);
        assert_eq!(a, (0..5).map(|_| r.next_u64()).collect::<Vec<_>>());
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            buckets[r.below(10) as usize] += 1;
        }
        assert!(buckets.iter().all(|b| (9_000..11_000).contains(b)), "{buckets:?}");
        assert!((0..1000).all(|_| (0.0..1.0).contains(&r.unit())));
    }

    #[test]
    fn mixes_parse_and_pick_by_weight() {
        let mix = Mix::parse("text=80,image=10,status=10").unwrap();
        assert_eq!(mix.to_string(), "text=80,image=10,status=10");
        assert!((mix.status_share() - 0.1).abs() < 1e-9);
        let mut rng = Rng::new(11);
        let (mut text, mut image, mut status) = (0, 0, 0);
        for _ in 0..100_000 {
            match mix.pick(&mut rng) {
                Item::Message("text") => text += 1,
                Item::Message("image") => image += 1,
                Item::Status => status += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!((79_000..81_000).contains(&text), "{text}");
        assert!((9_500..10_500).contains(&image), "{image}");
        assert!((9_500..10_500).contains(&status), "{status}");
        assert_eq!(Mix::parse(" text = 1 , voice=0 ").unwrap(), Mix::default());
        assert_eq!(Mix::default().to_string(), "text=1");
        assert!((0..100).all(|_| Mix::default().pick(&mut rng) == Item::Message("text")));
    }

    #[test]
    fn bad_mixes_say_what_is_wrong() {
        let err = |spec: &str| Mix::parse(spec).unwrap_err();
        assert!(err("txt=80").contains("unknown kind \"txt\""), "{}", err("txt=80"));
        assert!(err("txt=80").contains("text, image"));
        assert!(err("text").contains("not kind=weight"));
        assert!(err("text=eighty").contains("not a whole number"));
        assert!(err("text=-1").contains("not a whole number"));
        assert!(err("text=1.5").contains("not a whole number"));
        assert!(err("text=1,text=2").contains("given twice"));
        assert!(err("text=0").contains("at least one kind"));
        assert!(err("").contains("at least one kind"));
        assert!(err("system=1").contains("change the sender's number"));
    }
}
