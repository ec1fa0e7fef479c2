//! Bounds per client address, so that one client cannot spend what all others share: its open
//! connections (taken at accept, before a TLS handshake, so that idle handshakes count) and its
//! request bodies' bytes in flight, each capped; and which addresses may connect at all.
//!
//! A source is the peer's IP address, an IPv4-mapped IPv6 address counting as the IPv4 address
//! it maps, and an IPv6 address by its /64: one host is routinely given a whole /64, so counting
//! single IPv6 addresses would give it 2^64 budgets.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The per-source bounds; shared, so that a configuration reload changes them live. 0 is "no
/// cap". By default there is none, and every address may connect.
#[derive(Default)]
pub struct SourceLimits {
    /// Connections one source may hold open at once; more are answered 503 and closed.
    pub max_connections: AtomicUsize,
    /// Bytes of one source's request bodies held at once (within the budget of all bodies);
    /// a body that does not fit is answered 503.
    pub max_body_bytes: AtomicUsize,
    allowed: RwLock<Arc<AllowList>>,
}

impl SourceLimits {
    /// From the next connection on, only addresses in `list` may connect.
    pub fn allow(&self, list: AllowList) {
        *self.allowed.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(list);
    }

    pub fn allowed(&self) -> Arc<AllowList> {
        self.allowed.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The source a peer address counts as (see the module's doc).
pub fn source_of(ip: IpAddr) -> IpAddr {
    match unmapped(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
        v4 => v4,
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack socket reports for an
/// IPv4 peer) as the IPv4 address it is; anything else as it is. Not `to_ipv4`, which would
/// also turn `::1` into 0.0.0.1.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A network: an address and a prefix length (`192.0.2.0/24`, `2001:db8::/32`; a bare address is
/// /32 or /128). Our own, on std::net, rather than a crate (ipnet, ipnetwork): parsing and
/// matching are about thirty lines, and a dependency of the extension is compiled, audited and
/// updated for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, unmapped(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & mask32(self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => u128::from(ip) & mask128(self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    /// Refuses a network with bits set after its prefix (`10.0.0.1/8`): it would mean far more
    /// addresses than the one it names, and is more likely a typo than a wish.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (address, prefix) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let address: IpAddr = address.parse().map_err(|_| format!("'{address}' is not an IP address"))?;
        let (address, max, shift) = match unmapped(address) {
            IpAddr::V4(v4) if address.is_ipv6() => (IpAddr::V4(v4), 32, 96), // ::ffff:a.b.c.d/n
            IpAddr::V4(v4) => (IpAddr::V4(v4), 32, 0),
            v6 => (v6, 128, 0),
        };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|n| p.bytes().all(|b| b.is_ascii_digit()) && (shift..=max + shift).contains(n))
                .map(|n| n - shift)
                .ok_or_else(|| format!("'/{p}' is not a prefix length from {shift} to {}", max + shift))?,
        };
        let cidr = Cidr { network: address, prefix };
        if !cidr.contains(address) {
            return Err(format!(
                "{address} has bits set after its /{prefix}: write the network ({}/{prefix}) or the one address ({address}/{max})",
                Cidr::network_of(address, prefix)
            ));
        }
        Ok(cidr)
    }
}

impl Cidr {
    fn network_of(address: IpAddr, prefix: u8) -> IpAddr {
        match address {
            IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & mask32(prefix)).into()),
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & mask128(prefix)).into()),
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The networks that may connect; empty means any address.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AllowList(Vec<Cidr>);

impl AllowList {
    /// A comma-separated list of networks (blanks around entries ignored; '' allows any). The
    /// error names the first bad entry and why.
    pub fn parse(list: &str) -> Result<AllowList, String> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| entry.parse().map_err(|why| format!("'{entry}' is not an address or network: {why}")))
            .collect::<Result<_, _>>()
            .map(AllowList)
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        self.0.is_empty() || self.0.iter().any(|cidr| cidr.contains(ip))
    }

    pub fn is_any(&self) -> bool {
        self.0.is_empty()
    }

    pub fn networks(&self) -> &[Cidr] {
        &self.0
    }
}

/// What each source holds now. An entry exists only while it holds something, so the table is
/// never larger than the open connections.
pub(crate) struct Sources {
    pub(crate) limits: Arc<SourceLimits>,
    held: Mutex<HashMap<IpAddr, Held>>,
}

#[derive(Default)]
struct Held {
    connections: usize,
    body_bytes: usize,
}

impl Sources {
    pub(crate) fn new(limits: Arc<SourceLimits>) -> Arc<Sources> {
        Arc::new(Sources { limits, held: Mutex::new(HashMap::new()) })
    }

    /// A connection from `peer`, or `None` when its source holds its cap of them already.
    pub(crate) fn open(self: &Arc<Sources>, peer: IpAddr) -> Option<Source> {
        let source = source_of(peer);
        let cap = self.limits.max_connections.load(Ordering::Relaxed);
        let mut held = self.lock();
        let entry = held.entry(source).or_default();
        if cap != 0 && entry.connections >= cap {
            return None; // the entry holds connections: it stays
        }
        entry.connections += 1;
        Some(Source { sources: self.clone(), source })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sources holding anything (for tests: entries go when they hold nothing).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Gives back what a source held, and forgets it once it holds nothing.
    fn give_back(&self, source: IpAddr, connections: usize, body_bytes: usize) {
        let mut held = self.lock();
        if let Some(entry) = held.get_mut(&source) {
            entry.connections -= connections.min(entry.connections);
            entry.body_bytes -= body_bytes.min(entry.body_bytes);
            if entry.connections == 0 && entry.body_bytes == 0 {
                held.remove(&source);
            }
        }
    }
}

/// One open connection's hold on its source: given back when dropped (the connection is
/// closed, and the bodies read on it are gone). Its bodies charge their bytes through it.
pub(crate) struct Source {
    sources: Arc<Sources>,
    source: IpAddr,
}

impl Source {
    /// Charges `n` more body bytes to this source; false (and nothing charged) when that would
    /// take it over its cap.
    pub(crate) fn charge(&self, n: usize) -> bool {
        let cap = self.sources.limits.max_body_bytes.load(Ordering::Relaxed);
        let mut held = self.sources.lock();
        let Some(entry) = held.get_mut(&self.source) else { return false }; // held while `self` lives
        if cap != 0 && entry.body_bytes + n > cap {
            return false;
        }
        entry.body_bytes += n;
        true
    }

    pub(crate) fn uncharge(&self, n: usize) {
        self.sources.give_back(self.source, 0, n);
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.sources.give_back(self.source, 1, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn networks_are_parsed_in_both_families_and_bare_addresses_are_one_host() {
        assert_eq!(cidr("192.0.2.0/24").to_string(), "192.0.2.0/24");
        assert_eq!(cidr("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(cidr("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(cidr("2001:db8::1").to_string(), "2001:db8::1/128");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("::/0").to_string(), "::/0");
        // An IPv4-mapped network is the IPv4 network it maps.
        assert_eq!(cidr("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("::ffff:10.1.2.3").to_string(), "10.1.2.3/32");
    }

    #[test]
    fn bad_networks_are_refused_with_the_reason() {
        let err = |s: &str| s.parse::<Cidr>().unwrap_err();
        assert_eq!(err("10.0.0.0/33"), "'/33' is not a prefix length from 0 to 32");
        assert_eq!(err("2001:db8::/129"), "'/129' is not a prefix length from 0 to 128");
        assert_eq!(err("10.0.0.0/+8"), "'/+8' is not a prefix length from 0 to 32");
        assert_eq!(err("10.0.0.0/"), "'/' is not a prefix length from 0 to 32");
        assert_eq!(err("::ffff:10.0.0.0/8"), "'/8' is not a prefix length from 96 to 128");
        assert_eq!(err("10.0.0/8"), "'10.0.0' is not an IP address");
        assert_eq!(err("example.com"), "'example.com' is not an IP address");
        assert_eq!(err(""), "'' is not an IP address");
        assert_eq!(
            err("10.0.0.1/8"),
            "10.0.0.1 has bits set after its /8: write the network (10.0.0.0/8) or the one address (10.0.0.1/32)"
        );
        assert!(err("2001:db8::1/64").contains("(2001:db8::/64)"), "{}", err("2001:db8::1/64"));
    }

    #[test]
    fn a_network_contains_its_addresses_and_mapped_ones() {
        let net = cidr("192.0.2.0/24");
        assert!(net.contains(ip("192.0.2.0")) && net.contains(ip("192.0.2.255")));
        assert!(!net.contains(ip("192.0.3.0")) && !net.contains(ip("192.0.1.255")));
        assert!(net.contains(ip("::ffff:192.0.2.9")), "a dual-stack socket's view of an IPv4 peer");
        assert!(!net.contains(ip("2001:db8::1")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.5")) && !cidr("0.0.0.0/0").contains(ip("::1")));
        let v6 = cidr("2a03:2880::/32"); // one of Meta's
        assert!(v6.contains(ip("2a03:2880:f12d:83:face:b00c:0:25de")));
        assert!(!v6.contains(ip("2a03:2881::1")) && !v6.contains(ip("192.0.2.1")));
        assert!(cidr("::1").contains(ip("::1")) && !cidr("::1").contains(ip("0.0.0.1")));
    }

    #[test]
    fn the_allow_list_is_any_when_empty_and_names_its_bad_entry() {
        let any = AllowList::parse(" ").unwrap();
        assert!(any.is_any() && any.allows(ip("198.51.100.1")) && any.allows(ip("::1")));
        let list = AllowList::parse("31.13.24.0/21, 2a03:2880::/32,127.0.0.1,").unwrap();
        assert_eq!(list.networks().len(), 3);
        assert!(list.allows(ip("31.13.31.255")) && list.allows(ip("2a03:2880::5")) && list.allows(ip("127.0.0.1")));
        assert!(!list.allows(ip("127.0.0.2")) && !list.allows(ip("31.13.32.0")) && !list.allows(ip("::1")));
        let err = AllowList::parse("127.0.0.1, 10.0.0.0/40 ,::1").unwrap_err();
        assert_eq!(err, "'10.0.0.0/40' is not an address or network: '/40' is not a prefix length from 0 to 32");
    }

    #[test]
    fn sources_are_addresses_mapped_ones_unmapped_and_ipv6_by_its_64() {
        assert_eq!(source_of(ip("192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(source_of(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(source_of(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(source_of(ip("2001:db8:1:2:ffff::1")), source_of(ip("2001:db8:1:2::9")));
        assert_ne!(source_of(ip("2001:db8:1:3::1")), source_of(ip("2001:db8:1:2::1")));
        assert_eq!(source_of(ip("::1")), ip("::"), "::1 is not read as the IPv4 0.0.0.1");
    }

    #[test]
    fn a_source_holds_its_cap_of_connections_and_is_forgotten_when_it_holds_nothing() {
        let limits = Arc::new(SourceLimits::default());
        limits.max_connections.store(2, Ordering::Relaxed);
        let sources = Sources::new(limits.clone());
        let a = sources.open(ip("192.0.2.1")).unwrap();
        let b = sources.open(ip("::ffff:192.0.2.1")).unwrap(); // the same source
        assert!(sources.open(ip("192.0.2.1")).is_none(), "a third connection of a source capped at 2");
        let other = sources.open(ip("192.0.2.2")).expect("another source has its own cap");
        // IPv6 by its /64: two addresses of one /64 are one source.
        let v6 = [sources.open(ip("2001:db8::1")).unwrap(), sources.open(ip("2001:db8::2")).unwrap()];
        assert!(sources.open(ip("2001:db8::3")).is_none());
        assert!(sources.open(ip("2001:db8:0:1::1")).is_some());
        drop(a);
        let c = sources.open(ip("192.0.2.1")).expect("a slot comes free when a connection closes");
        // Live: 0 lifts the cap.
        limits.max_connections.store(0, Ordering::Relaxed);
        let d = sources.open(ip("192.0.2.1")).unwrap();
        assert_eq!(sources.len(), 3);
        drop((b, c, d, other, v6));
        assert_eq!(sources.len(), 0, "entries of sources that hold nothing are removed");
    }

    #[test]
    fn body_bytes_are_capped_per_source_and_given_back() {
        let limits = Arc::new(SourceLimits::default());
        limits.max_body_bytes.store(100, Ordering::Relaxed);
        let sources = Sources::new(limits);
        let (a1, a2, b) = (
            sources.open(ip("192.0.2.1")).unwrap(),
            sources.open(ip("192.0.2.1")).unwrap(),
            sources.open(ip("192.0.2.2")).unwrap(),
        );
        assert!(a1.charge(60));
        assert!(!a2.charge(41), "the source's two connections share its 100 bytes");
        assert!(a2.charge(40));
        assert!(b.charge(100), "another source has its own budget");
        a1.uncharge(60);
        assert!(a2.charge(60));
        // A connection closed while its bytes are held keeps the entry until they are given back.
        drop(a1);
        b.uncharge(100);
        drop(b);
        assert_eq!(sources.len(), 1);
        a2.uncharge(100);
        drop(a2);
        assert_eq!(sources.len(), 0);
    }
}
